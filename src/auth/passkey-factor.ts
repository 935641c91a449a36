/**
 * The extension point through which a passkey (WebAuthn assertion) serves as a second factor
 * or for a step-up: POST /api/auth/mfa/verify `{ mfaToken, webauthn }` and POST
 * /api/auth/reauthenticate `{ webauthn }` call `verifyWebauthnFactor`, and a login offers
 * `webauthn` among its `methods` when `hasPasskeyFactor` says so.
 *
 * Until the passkey work provides them, the account has no passkey factor: the login never
 * offers one, and a `webauthn` response is answered 400 PASSKEY_FACTOR_UNAVAILABLE. The passkey
 * module replaces the two functions below with ones that look up the user's credentials and
 * verify the assertion (challenge single use and expiring, signature counter checked); the
 * routes need not change.
 */
import { PasskeyFactorUnavailable } from '../errors.js'

export interface PasskeyFactorContext {
  /** When the assertion is checked. */
  now: Date
  /** The request's origin, for the assertion's expected origin. */
  origin: string | undefined
}

/** True when the user has a passkey that may serve as a second factor. */
export async function hasPasskeyFactor (_userId: string): Promise<boolean> {
  return false
}

/**
 * Verifies a WebAuthn assertion of one of the user's passkeys: true when it is valid, false when
 * it is not (the caller counts that like a wrong password and answers 401 MFA_CODE_INVALID).
 * Throws 400 PASSKEY_FACTOR_UNAVAILABLE when the user has no passkey factor: today, always.
 */
export async function verifyWebauthnFactor (_userId: string, _response: unknown, _context: PasskeyFactorContext): Promise<boolean> {
  throw new PasskeyFactorUnavailable()
}
