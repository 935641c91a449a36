/**
 * A passkey as a second factor or for a step-up: POST /api/auth/mfa/verify `{ mfaToken,
 * webauthn }` and POST /api/auth/reauthenticate `{ webauthn }` check the assertion here, and a
 * login offers `webauthn` among its `methods` (with request options listing the user's
 * passkeys) when the account has one. The ceremony itself is the passkey service's
 * (src/auth/passkeys.ts): a challenge of purpose `factor` bound to the user, single use and
 * expiring, the signature counter checked.
 */
import type { PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server'
import type { AuthenticationResponseJSON, PasskeyService } from './passkeys.js'

export interface PasskeyFactorContext {
  /** When the assertion is checked. */
  now: Date
  /** The request's origin (the assertion's own origin is checked by the passkey service). */
  origin: string | undefined
}

export interface PasskeyFactor {
  /** True when the user has a passkey that may serve as a second factor. */
  has: (userId: string) => Promise<boolean>
  /** Request options listing the user's passkeys, with a new factor challenge; null when none. */
  options: (userId: string, now: Date) => Promise<PublicKeyCredentialRequestOptionsJSON | null>
  /**
   * `ok` when the assertion is a valid, fresh one of the user's passkeys; otherwise `cloned`
   * names the passkey whose validly signed assertion did not advance its counter (a copied
   * authenticator), for the caller to audit.
   */
  verify: (userId: string, response: unknown, context: PasskeyFactorContext) => Promise<{ ok: true } | { ok: false, cloned?: string }>
}

export function passkeyFactorOf (passkeys: PasskeyService): PasskeyFactor {
  return {
    has: async (userId) => (await passkeys.list(userId)).length > 0,
    options: async (userId, now) => await passkeys.factorOptions(userId, now),
    verify: async (userId, response, { now }) => {
      if (typeof response !== 'object' || response === null) return { ok: false }
      const result = await passkeys.verifyFactor(userId, response as AuthenticationResponseJSON, now)
      if (result.ok) return { ok: true }
      return result.reason === 'cloned' ? { ok: false, cloned: (result as { passkeyId?: string }).passkeyId ?? 'unknown' } : { ok: false }
    }
  }
}
