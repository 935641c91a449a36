/**
 * Every error the service answers with, in one list. Routes and hooks `throw` these; the one
 * error handler in `src/app.ts` renders `{ statusCode, code, message }`.
 */
import createError from '@fastify/error'
import { bearerChallenge as verifierChallenge } from '../packages/verifier/src/errors.js'

export const BadRequest = createError('BAD_REQUEST', 'The request could not be understood', 400)
export const InvalidJson = createError('INVALID_JSON', 'The request body is not valid JSON', 400)
export const ValidationFailed = createError('VALIDATION_FAILED', '%s', 400)
export const WeakPassword = createError('WEAK_PASSWORD', '%s', 400)
export const InvalidUsername = createError('INVALID_USERNAME', '%s', 400)
export const UsernameTaken = createError('USERNAME_TAKEN', 'This username is not available', 409)
export const InvalidEmail = createError('INVALID_EMAIL', '%s', 400)
export const EmailTaken = createError('EMAIL_TAKEN', 'This e-mail address is not available', 409)
/** A login by an identifier LOGIN_IDENTIFIERS does not accept (the message names it). */
export const LoginIdentifierRefused = createError('LOGIN_IDENTIFIER_REFUSED', '%s', 400)
/** A mailed one-time token that is unknown, spent, expired or void: one answer for all (routes/auth/*). */
export const AccountTokenInvalid = createError('ACCOUNT_TOKEN_INVALID', 'This link is invalid or has expired', 400)
/** An endpoint that sends mail, while MAIL_TRANSPORT is not set: the same answer whatever the input. */
export const MailDisabled = createError('MAIL_DISABLED', 'This service does not send mail', 503)
/** An action that mails the account's owner (a verification mail, an admin's reset mail), on an account without an address. */
export const NoEmail = createError('NO_EMAIL', 'This account has no e-mail address', 409)
/** A verification mail asked for by an account whose address is verified already. */
export const EmailAlreadyVerified = createError('EMAIL_ALREADY_VERIFIED', 'This e-mail address is already verified', 409)
/** An administrator's reset mail for a disabled account, whose reset could never be completed. */
export const UserDisabled = createError('USER_DISABLED', 'This user is disabled; enable the user first', 409)
/** Login before the address is verified, with REQUIRE_EMAIL_VERIFICATION=true. */
export const EmailNotVerified = createError('EMAIL_NOT_VERIFIED', 'Verify your e-mail address before logging in', 403)
/** An address change to the address the account already has. */
export const EmailUnchanged = createError('EMAIL_UNCHANGED', 'This is already the address of the account', 400)
/**
 * Deleting the account without a password in the body, and no login recent enough to stand in
 * for one (src/auth/account-deletion.ts).
 */
export const ReauthenticationRequired = createError('REAUTHENTICATION_REQUIRED', 'Enter your password to do this', 403)
export const RegistrationDisabled = createError('REGISTRATION_DISABLED', 'Registration is disabled', 403)
export const InvalidCredentials = createError('INVALID_CREDENTIALS', 'Invalid username or password', 401)
/** The message says which origin arrived and which are allowed (routes/auth/refresh-transport.ts). */
export const CrossSiteRequest = createError('CROSS_SITE_REQUEST', 'Cross-site request refused: %s', 403)
export const InvalidCurrentPassword = createError('INVALID_CURRENT_PASSWORD', 'The current password is incorrect', 403)
/** Any refused passkey sign-in: one answer whatever failed, so that it tells nothing about accounts or credentials. */
export const PasskeyInvalid = createError('PASSKEY_INVALID', 'The passkey could not be verified', 401)
/** A registration whose challenge is unknown, spent or expired, or whose attestation does not verify. */
export const PasskeyRegistrationFailed = createError('PASSKEY_REGISTRATION_FAILED', 'The passkey could not be registered: %s', 400)
export const PasskeyNotFound = createError('PASSKEY_NOT_FOUND', 'No such passkey', 404)
export const Forbidden = createError('FORBIDDEN', 'You are not allowed to do this', 403)

export const RefreshTokenMissing = createError('REFRESH_TOKEN_MISSING', 'No refresh token was presented', 401)
export const RefreshTokenInvalid = createError('REFRESH_TOKEN_INVALID', 'The refresh token is invalid', 401)
export const RefreshTokenExpired = createError('REFRESH_TOKEN_EXPIRED', 'The refresh token has expired', 401)
export const SessionRevoked = createError('SESSION_REVOKED', 'The session has ended', 401)
export const TokenReused = createError('TOKEN_REUSED', 'The refresh token was already used; the session has been ended', 401)

/**
 * Bearer failures carry `WWW-Authenticate` (RFC 6750 §3); see `bearerChallenge`. The ones a
 * consuming service's verifier answers too are defined once, in the verifier package, so that
 * both fail alike.
 */
export { AccessTokenExpired, AccessTokenInvalid, AuthorizationRequired, ServiceUnavailable } from '../packages/verifier/src/errors.js'
export const SessionEnded = createError('SESSION_ENDED', 'The session of this access token has ended', 401)

/** Second factor (src/auth/mfa.ts, routes/auth/mfa.ts). A wrong code counts like a wrong password. */
/** 403, not 401: on Bearer routes a 401 means the access token failed, and clients refresh and retry on it. */
export const MfaCodeInvalid = createError('MFA_CODE_INVALID', 'The code is not valid', 403)
export const MfaTokenInvalid = createError('MFA_TOKEN_INVALID', 'The MFA token is invalid, expired or already used; log in again', 401)
export const TotpAlreadyEnabled = createError('TOTP_ALREADY_ENABLED', 'TOTP is already enabled; disable it first', 409)
export const TotpNotEnrolled = createError('TOTP_NOT_ENROLLED', 'No TOTP enrolment to act on; enrol first', 409)
/** TOTP enrolment in production without KEY_ENCRYPTION_KEY: the secret would be stored in clear. */
export const TotpUnavailable = createError('TOTP_UNAVAILABLE', 'TOTP is not available on this server', 503)
export const MfaNotEnabled = createError('MFA_NOT_ENABLED', 'No second factor is enabled', 409)
/** Answered until passkeys are wired in (src/auth/passkey-factor.ts). */
export const PasskeyFactorUnavailable = createError('PASSKEY_FACTOR_UNAVAILABLE', 'No passkey factor is available for this account', 400)

export const NotFound = createError('NOT_FOUND', 'Not found', 404)
export const SessionNotFound = createError('SESSION_NOT_FOUND', 'No such session', 404)
export const UserNotFound = createError('USER_NOT_FOUND', 'No such user', 404)
export const InvalidRoles = createError('INVALID_ROLES', '%s', 400)
export const AdminSelfLockout = createError('ADMIN_SELF_LOCKOUT', 'Administrators cannot disable their own account or remove their own admin role', 409)
export const MethodNotAllowed = createError('METHOD_NOT_ALLOWED', 'Method not allowed', 405)
export const PayloadTooLarge = createError('PAYLOAD_TOO_LARGE', 'The request body is too large', 413)
export const UnsupportedMediaType = createError('UNSUPPORTED_MEDIA_TYPE', 'Unsupported content type; send application/json', 415)
export const RateLimited = createError('RATE_LIMITED', 'Too many requests; retry after %s seconds', 429)
/**
 * The per-account login throttle's shared store (Redis) cannot answer: the password is not
 * evaluated, since an uncounted guess is an unlimited one (src/auth/redis-login-throttle.ts).
 */
export const ThrottleUnavailable = createError('THROTTLE_UNAVAILABLE', 'Logins are paused: the login throttle is unavailable; retry later', 503)
export const InternalError = createError('INTERNAL_ERROR', 'Internal server error', 500)

/**
 * The `WWW-Authenticate` value for a 401 of a Bearer endpoint: the verifier package's answer
 * (no error attribute when no token was sent, `invalid_token` otherwise, RFC 6750 §3.1), plus
 * the service's own check that the token's session still exists.
 */
export function bearerChallenge (code: string, realm = 'auth'): string | undefined {
  if (code === 'SESSION_ENDED') return `Bearer realm="${realm}", error="invalid_token", error_description="The session has ended"`
  return verifierChallenge(code, realm)
}
