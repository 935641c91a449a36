/** Response shapes of the admin routes. */
import { Type, type Static } from 'typebox'
import type { SessionRow } from '../../db/repositories/sessions.js'
import type { User } from '../../db/repositories/users.js'
import { MAX_ROLES, ROLE_PATTERN, USER_SELECTOR_PATTERN } from '../../src/admin/users.js'

export const AdminUserSchema = Type.Object({
  id: Type.String(),
  username: Type.String(),
  roles: Type.Array(Type.String()),
  disabled: Type.Boolean(),
  createdAt: Type.String({ format: 'date-time' })
})

export const AdminSessionSchema = Type.Object({
  id: Type.String({ description: 'The `sid` claim of the session\'s access tokens' }),
  userId: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.String({ format: 'date-time' }),
  userAgent: Type.Union([Type.String(), Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()])
})

export const RolesInput = Type.Array(Type.String({ pattern: ROLE_PATTERN }), {
  maxItems: MAX_ROLES,
  description: `Role names (${ROLE_PATTERN}); \`admin\` grants these endpoints`
})

/** `:user` is `id:<id>` or `name:<username>` (a name case-insensitively, as login finds it); never bare. */
export const UserParams = Type.Object({
  user: Type.String({
    pattern: USER_SELECTOR_PATTERN,
    maxLength: 261,
    description: 'The user: `id:<id>` or `name:<username>` (URL-encoded). A bare id or name is refused (400), so that a username that looks like an id cannot name another account.'
  })
})

export function adminUserView (u: User): Static<typeof AdminUserSchema> {
  return { id: u.id, username: u.username, roles: u.roles, disabled: u.disabled, createdAt: u.createdAt.toISOString() }
}

export function adminSessionView (s: SessionRow): Static<typeof AdminSessionSchema> {
  return {
    id: s.id,
    userId: s.userId,
    createdAt: s.createdAt.toISOString(),
    lastUsedAt: s.lastUsedAt.toISOString(),
    expiresAt: s.expiresAt.toISOString(),
    userAgent: s.userAgent,
    ip: s.ip
  }
}
