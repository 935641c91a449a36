/**
 * User administration, shared by the admin HTTP routes (routes/admin) and the admin CLI
 * (src/cli/admin.ts): create a user with roles, disable or enable one, set roles, list and
 * end sessions. Functions return results; the callers decide what they mean on the wire or on
 * the terminal, and record the audit events through the `record` they pass in.
 *
 * Disabling a user ends every session at once; login, refresh and the Bearer check all refuse
 * a disabled user, so nothing issued earlier keeps working on this service. Tokens already
 * handed to other services stay valid offline until their `exp` (ACCESS_TOKEN_TTL).
 */
import { randomUUID } from 'node:crypto'
import type { AuditEventType } from '../../db/repositories/audit.js'
import type { SessionRow } from '../../db/repositories/sessions.js'
import type { User } from '../../db/repositories/users.js'
import type { Repositories } from '../../db/repositories/index.js'
import { checkUsername, normalizeUsername, USERNAME_MAX, usernameKey, type PasswordPolicy } from '../auth/credentials.js'
import type { PasswordHasher } from '../auth/passwords.js'

/** The role that grants /api/admin. */
export const ADMIN_ROLE = 'admin'

/** Role names: short, lower-case, no spaces; what a token's `roles` claim may carry. */
export const ROLE_PATTERN = '^[a-z][a-z0-9_.:-]{0,31}$'
export const MAX_ROLES = 16

/**
 * How an administrator names a user, on the routes and in the CLI: `id:<id>` or
 * `name:<username>`, never a bare string. A bare string was tried as an id and then as a name,
 * so a name that equals someone's id (the `sub` claim, public to the user) could make an
 * action fall on the wrong account. Registration also refuses names shaped like ids.
 */
export type UserSelector = { by: 'id', id: string } | { by: 'name', name: string }

const ID_MAX = 64
/** A selector's shape, for the route's schema; names are bounded like UsernameInput (256 UTF-16 units). */
export const USER_SELECTOR_PATTERN = `^(?:id:\\S{1,${ID_MAX}}|name:.{1,256})$`
export const USER_SELECTOR_HELP = 'id:<id> or name:<username>'

export function parseUserSelector (raw: string): UserSelector | null {
  if (!new RegExp(USER_SELECTOR_PATTERN, 'u').test(raw)) return null
  return raw.startsWith('id:') ? { by: 'id', id: raw.slice(3) } : { by: 'name', name: raw.slice(5) }
}

export type RecordEvent = (type: AuditEventType, fields: { userId?: string | null, sessionId?: string | null, detail?: Record<string, unknown> }) => void

export interface AdminDeps {
  repos: Pick<Repositories, 'users' | 'sessions'>
  passwords: Pick<PasswordHasher, 'hash'>
  passwordPolicy: PasswordPolicy
}

export type CreateResult =
  | { ok: true, user: User }
  | { ok: false, reason: 'invalid_username' | 'weak_password' | 'invalid_roles' | 'taken', message: string }

export type RolesCheck = { ok: true, roles: string[] } | { ok: false, message: string }

/** Roles as given, trimmed and de-duplicated, or why they are refused. */
export function checkRoles (input: readonly string[]): RolesCheck {
  const roles = [...new Set(input.map((r) => r.trim()).filter((r) => r !== ''))]
  const pattern = new RegExp(ROLE_PATTERN)
  const bad = roles.find((r) => !pattern.test(r))
  if (bad !== undefined) return { ok: false, message: `role "${bad}" must match ${ROLE_PATTERN}` }
  if (roles.length > MAX_ROLES) return { ok: false, message: `at most ${MAX_ROLES} roles` }
  return { ok: true, roles }
}

export function createUserAdmin ({ repos, passwords, passwordPolicy }: AdminDeps) {
  return {
    /** The user a selector names: by id exactly, or by name as login finds it (case-insensitively). */
    async find (selector: UserSelector): Promise<User | null> {
      if (selector.by === 'id') return await repos.users.findById(selector.id)
      const name = normalizeUsername(selector.name)
      return [...name].length > USERNAME_MAX ? null : await repos.users.findByUsername(name)
    },

    /** Accounts whose names collide by fold key or skeleton (from before those were enforced). */
    async collisions () {
      return await repos.users.collisions()
    },

    async list (page: { limit: number, offset: number }): Promise<User[]> {
      return await repos.users.list(page)
    },

    /** Same username and password rules as registration; works when registration is closed. */
    async create (input: { username: string, password: string, roles: readonly string[] }, now: Date, record: RecordEvent): Promise<CreateResult> {
      const username = checkUsername(input.username)
      if (!username.ok) return { ok: false, reason: 'invalid_username', message: username.message }
      const password = passwordPolicy.check(input.password)
      if (!password.ok) return { ok: false, reason: 'weak_password', message: password.message }
      const roles = checkRoles(input.roles)
      if (!roles.ok) return { ok: false, reason: 'invalid_roles', message: roles.message }
      const user = await repos.users.insert({
        id: randomUUID(),
        username: username.value,
        usernameKey: usernameKey(username.value),
        passwordHash: await passwords.hash(password.value),
        roles: roles.roles,
        now
      })
      if (user === null) return { ok: false, reason: 'taken', message: 'This username is not available' }
      record('user_created', { userId: user.id, detail: { username: user.username, roles: user.roles } })
      return { ok: true, user }
    },

    /** Disables (ending every session) or enables a user; null when there is no such user. */
    async setDisabled (userId: string, disabled: boolean, now: Date, record: RecordEvent): Promise<{ user: User, endedSessions: number } | null> {
      if (!await repos.users.setDisabled(userId, disabled, now)) return null
      const endedSessions = disabled ? await repos.sessions.revokeAllForUser(userId, 'disabled', now) : 0
      record(disabled ? 'user_disabled' : 'user_enabled', { userId, detail: disabled ? { endedSessions } : {} })
      const user = await repos.users.findById(userId)
      return user === null ? null : { user, endedSessions }
    },

    /** Replaces the user's roles; new access tokens (at the next refresh) carry them. */
    async setRoles (userId: string, roles: readonly string[], now: Date, record: RecordEvent): Promise<{ user: User, previous: string[] } | null> {
      const before = await repos.users.findById(userId)
      if (before === null) return null
      await repos.users.setRoles(userId, [...roles], now)
      record('roles_changed', { userId, detail: { from: before.roles, to: [...roles] } })
      return { user: { ...before, roles: [...roles] }, previous: before.roles }
    },

    async listSessions (userId: string, now: Date): Promise<SessionRow[]> {
      return await repos.sessions.listLive(userId, now)
    },

    /** Ends one live session of any user; returns whose it was, or null when unknown or already ended. */
    async revokeSession (sessionId: string, now: Date, record: RecordEvent): Promise<{ userId: string } | null> {
      const live = await repos.sessions.findLive(sessionId, now)
      if (live === null || !await repos.sessions.revoke(sessionId, 'admin', now, live.user.id)) return null
      record('session_revoked', { userId: live.user.id, sessionId, detail: { reason: 'admin' } })
      return { userId: live.user.id }
    },

    /** Ends every session of a user; returns how many. */
    async revokeAllSessions (userId: string, now: Date, record: RecordEvent): Promise<number> {
      const count = await repos.sessions.revokeAllForUser(userId, 'admin', now)
      record('session_revoked', { userId, detail: { reason: 'admin', count } })
      return count
    }
  }
}

export type UserAdmin = ReturnType<typeof createUserAdmin>
