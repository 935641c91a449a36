/**
 * The errors the verifier answers with: the same codes, messages and `WWW-Authenticate`
 * challenges as the auth service's own Bearer endpoints (its src/errors.ts), so a consuming
 * service fails exactly like the auth service. test/verifier/verifier.test.ts compares both
 * answers for every forged token.
 */
import createError from '@fastify/error'

export const AuthorizationRequired = createError('AUTHORIZATION_REQUIRED', 'A Bearer access token is required', 401)
export const AccessTokenInvalid = createError('ACCESS_TOKEN_INVALID', 'The access token is invalid', 401)
export const AccessTokenExpired = createError('ACCESS_TOKEN_EXPIRED', 'The access token has expired', 401)
export const ServiceUnavailable = createError('SERVICE_UNAVAILABLE', '%s', 503)
/** RFC 9470: the token is good, but how (or how long ago) the user authenticated is not enough for this route. */
export const InsufficientUserAuthentication = createError('INSUFFICIENT_USER_AUTHENTICATION', '%s', 401)

const bearerErrors: Record<string, string> = {
  ACCESS_TOKEN_INVALID: 'The access token is invalid',
  ACCESS_TOKEN_EXPIRED: 'The access token expired'
}

/** The `WWW-Authenticate` value of a 401 (RFC 6750 §3.1): no error attribute when no token was sent. */
export function bearerChallenge (code: string, realm: string): string | undefined {
  if (code === 'AUTHORIZATION_REQUIRED') return `Bearer realm="${realm}"`
  const description = bearerErrors[code]
  return description === undefined ? undefined : `Bearer realm="${realm}", error="invalid_token", error_description="${description}"`
}

/**
 * The step-up challenge of RFC 9470: `insufficient_user_authentication`, with `acr_values` (the
 * accepted `amr` methods, space-separated; this service defines no other authentication context
 * classes) and `max_age` (seconds) as the route requires.
 */
export function stepUpChallenge (realm: string, description: string, required: { requireAmr?: string[], maxAuthAge?: number }): string {
  let value = `Bearer realm="${realm}", error="insufficient_user_authentication", error_description="${description.replace(/["\\]/g, '')}"`
  if (required.requireAmr !== undefined && required.requireAmr.length > 0) value += `, acr_values="${required.requireAmr.join(' ')}"`
  if (required.maxAuthAge !== undefined) value += `, max_age="${required.maxAuthAge}"`
  return value
}
