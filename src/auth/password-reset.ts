/**
 * Password reset (docs/accounts.md, "Password reset"): a person who forgot their password asks
 * for a link (`/password/forgot`, or an administrator sends one), and the link's token sets a
 * new password (`/password/reset`). Shared by the routes and the admin CLI; results are values,
 * the callers decide what they mean on the wire or the terminal.
 *
 * - The token is 256 random bits (src/auth/account-tokens.ts) that exist only in the mail; the
 *   database keeps its SHA-256. It works PASSWORD_RESET_TTL, once, and is void as soon as the
 *   password changes by any way (its password stamp no longer matches) or a newer one is issued.
 * - Issuing it and writing its mail to the outbox are one transaction: once the request is
 *   answered, the mail is committed and the outbox delivers it whatever happens next.
 * - Spending it sets the password, raises the security stamp and ends every session in one
 *   transaction, so no session started with the old password outlives the reset, and a login
 *   checked against the old password before the commit starts none after it.
 */
import type { Repositories } from '../../db/repositories/index.js'
import type { ResetDone, ResetRequestOutcome } from '../../db/repositories/password-resets.js'
import type { User } from '../../db/repositories/users.js'
import { accountLink } from '../mail/links.js'
import type { MailKind } from '../mail/templates.js'
import { hashAccountToken, newAccountToken } from './account-tokens.js'
import { normalizeUsername, USERNAME_MAX, type PasswordPolicy } from './credentials.js'
import { emailKey, normalizeEmail } from './email.js'
import type { PasswordHasher } from './passwords.js'

/** Writes a message to the outbox inside the running transaction (plugins/mail.ts `enqueue`). */
export type Enqueue = (kind: MailKind, recipient: string, vars: Record<string, string | number>, now: Date) => unknown

export interface ResetMailDeps {
  repos: Pick<Repositories, 'passwordResets'>
  /** PASSWORD_RESET_TTL, in seconds. */
  ttlSeconds: number
  /** APP_URL, else PUBLIC_URL: where the link's page is. */
  linkBase: string
  enqueue: Enqueue
}

/**
 * The account a forgot-password request names, or null: by address (as login finds it) or by
 * username. Anything that cannot be an account is simply none.
 */
export async function findResetAccount (repos: Pick<Repositories, 'users'>, named: { email?: string | undefined, username?: string | undefined }): Promise<User | null> {
  if (named.email !== undefined) return await repos.users.findByEmailKey(emailKey(normalizeEmail(named.email)))
  const name = normalizeUsername(named.username ?? '')
  return [...name].length > USERNAME_MAX ? null : await repos.users.findByUsername(name)
}

/**
 * Issues a reset token for the account and, in the same transaction, enqueues the mail that
 * carries it and runs `audit` (synchronous: it records the event inside the transaction).
 * `limit`: the self-service limit per account (null for an administrator).
 */
export async function sendResetMail (deps: ResetMailDeps, userId: string, now: Date, options: { limit: { max: number, windowSeconds: number } | null, audit: () => void }): Promise<ResetRequestOutcome> {
  const { token, tokenHash } = newAccountToken()
  const { limit } = options
  return await deps.repos.passwordResets.request({
    userId,
    tokenHash,
    now,
    expiresAt: new Date(now.getTime() + deps.ttlSeconds * 1000),
    limit: limit === null ? null : { max: limit.max, since: new Date(now.getTime() - limit.windowSeconds * 1000) }
  }, (email) => {
    deps.enqueue('password_reset', email, {
      link: accountLink(deps.linkBase, 'resetPassword', token),
      expiresInMinutes: Math.max(1, Math.ceil(deps.ttlSeconds / 60))
    }, now)
    options.audit()
  })
}

export interface ResetDeps {
  repos: Pick<Repositories, 'passwordResets' | 'accountTokens'>
  passwords: Pick<PasswordHasher, 'hash'>
  passwordPolicy: PasswordPolicy
  /** Null when mail is off: the reset still works, without telling the owner by mail. */
  enqueue: Enqueue | null
}

export type ResetResult =
  | { ok: true, done: ResetDone }
  | { ok: false, reason: 'invalid_token' }
  | { ok: false, reason: 'weak_password', message: string }

/**
 * Sets a new password with a reset token. The token is looked at first (spending nothing), so
 * that a dead link says so before the person chooses a password; a weak password leaves it
 * usable. The new password is hashed outside the transaction, which then commits only while
 * the token is still live (repository `spend`), and enqueues `password_changed` to the owner
 * and runs `audit` inside it.
 */
export async function resetPassword (deps: ResetDeps, input: { token: string, newPassword: string }, now: Date, audit: (done: ResetDone) => void): Promise<ResetResult> {
  const tokenHash = hashAccountToken(input.token)
  if (tokenHash === null || await deps.repos.accountTokens.find(tokenHash, 'reset_password', now) === null) return { ok: false, reason: 'invalid_token' }
  const next = deps.passwordPolicy.check(input.newPassword)
  if (!next.ok) return { ok: false, reason: 'weak_password', message: next.message }
  const passwordHash = await deps.passwords.hash(next.value)
  const done = await deps.repos.passwordResets.spend({ tokenHash, passwordHash, now }, (done) => {
    if (deps.enqueue !== null && done.email !== null) deps.enqueue('password_changed', done.email, {}, now)
    audit(done)
  })
  return done === null ? { ok: false, reason: 'invalid_token' } : { ok: true, done }
}
