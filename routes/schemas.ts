/** Shared, bounded schema primitives and the response shapes used by several routes. */
import { Type, type Static } from 'typebox'

export const ErrorSchema = Type.Object({
  statusCode: Type.Integer({ minimum: 400, maximum: 599 }),
  code: Type.String({ pattern: '^[A-Z][A-Z0-9_]*$', description: 'Stable SCREAMING_SNAKE error code' }),
  message: Type.String()
}, { $id: 'Error', description: 'Every error response' })

export const errorRef = Type.Ref('Error')

/**
 * Statuses any route can answer whatever it does: a body that cannot be parsed (400, 413,
 * 415), a rate limit (429), an unexpected failure (500) or an unavailable database (503).
 */
const ANY_ROUTE = [400, 413, 415, 429, 500, 503]

/** Error responses for a route's `response` map: its own statuses plus those of every route. */
export function errors (...statuses: number[]): Record<number, typeof errorRef> {
  return Object.fromEntries([...new Set([...statuses, ...ANY_ROUTE])].sort().map((s) => [s, errorRef]))
}

// Bounds are generous for login (the server answers "invalid credentials" for anything that is
// not an account) and exact for register; the maximum password length is enforced before any
// hashing, so a huge password costs nothing.
export const UsernameInput = Type.String({ minLength: 1, maxLength: 256, description: '3 to 64 letters, digits and . _ - @ + (after NFKC and trimming)' })
export const PasswordInput = Type.String({ minLength: 1, maxLength: 256, description: 'At most 256 characters; the minimum is PASSWORD_MIN_LENGTH (default 12)' })
// Room for any access token presented by mistake (with its amr, auth_time and email_verified claims), so that it is refused as an invalid refresh token rather than as malformed input.
export const RefreshTokenInput = Type.String({ minLength: 1, maxLength: 1024, description: 'A refresh token from a body-mode login or refresh' })
export const Transport = Type.Union([Type.Literal('cookie'), Type.Literal('body')], { description: 'Where the refresh token travels (default REFRESH_TRANSPORT_DEFAULT)' })

export const EmailInput = Type.String({ minLength: 1, maxLength: 320, description: 'An e-mail address, at most 254 characters after trimming; unique case-insensitively' })

export const UserSchema = Type.Object({
  id: Type.String(),
  username: Type.String(),
  roles: Type.Array(Type.String()),
  createdAt: Type.String({ format: 'date-time' }),
  email: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: 'The account\'s address; null when it has none' })),
  emailVerified: Type.Optional(Type.Boolean({ description: 'Whether the owner confirmed the address' }))
}, { $id: 'User' })

export const TokenResponseSchema = Type.Object({
  accessToken: Type.String(),
  tokenType: Type.Literal('Bearer'),
  expiresIn: Type.Integer({ description: 'Seconds until the access token expires' }),
  refreshToken: Type.Optional(Type.String({ description: 'Body mode only; in cookie mode the token is only in the httpOnly cookie' }))
}, { $id: 'TokenResponse' })

export type TokenResponse = Static<typeof TokenResponseSchema>

/** A login that needs a second factor (or its enrolment) first: 202 from POST /api/auth/login. */
export const MfaChallengeResponse = Type.Object({
  mfaRequired: Type.Optional(Type.Literal(true)),
  mfaEnrollmentRequired: Type.Optional(Type.Literal(true, { description: 'MFA_REQUIRED_ROLES: enrol TOTP with this mfaToken (POST /api/auth/mfa/totp/enroll, then /confirm) to finish the login' })),
  mfaToken: Type.String({ description: 'Single use, expires within 5 minutes; bound to this login\'s transport and user agent' }),
  methods: Type.Optional(Type.Array(Type.Union([Type.Literal('totp'), Type.Literal('recovery'), Type.Literal('webauthn')]), { description: 'The factors that can finish the login' })),
  webauthnOptions: Type.Optional(Type.Object({ challenge: Type.String() }, { additionalProperties: true, description: 'With `webauthn` among the methods: WebAuthn request options listing the account\'s passkeys (a single-use challenge, 5 minutes), for the assertion sent to POST /api/auth/mfa/verify as `webauthn`' }))
})

export function userView (user: { id: string, username: string, roles: string[], createdAt: Date, email?: string | null, emailVerified?: boolean }): Static<typeof UserSchema> {
  return {
    id: user.id,
    username: user.username,
    roles: user.roles,
    createdAt: user.createdAt.toISOString(),
    ...(user.email === undefined ? {} : { email: user.email, emailVerified: user.emailVerified ?? false })
  }
}
