/** Response shapes of the admin routes. */
import { Type, type Static } from 'typebox'
import type { SessionRow } from '../../db/repositories/sessions.js'
import type { User } from '../../db/repositories/users.js'
import { MAX_ROLES, ROLE_PATTERN } from '../../src/admin/users.js'

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

export const UserIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) })

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
