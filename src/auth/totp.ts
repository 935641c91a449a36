/**
 * TOTP (RFC 6238) through the `otpauth` library: SHA-1, 6 digits, 30-second steps, the
 * parameters every authenticator app reads from an `otpauth://` URI. A code is accepted for the
 * current step and one step either side (clock drift); the caller then records the step it
 * matched, and a code of that step or an earlier one is refused from then on (replay), see the
 * mfa repository's `useTotpStep`.
 *
 * Secrets are sealed at rest under KEY_ENCRYPTION_KEY (AES-256-GCM, `seal` of
 * src/keys/signing-key.ts, the user id in the associated data, so a sealed secret copied to
 * another user's row does not open). Without the key, production offers no TOTP at all
 * (`available` is false and enrolment answers TOTP_UNAVAILABLE), so no secret is ever stored in
 * clear there; development and tests store it in clear, for a first run without settings.
 */
import * as OTPAuth from 'otpauth'
import { isSealed, openSealed, seal } from '../keys/signing-key.js'

export const TOTP_PERIOD = 30
const DIGITS = 6
const WINDOW = 1

const context = (userId: string): string => `totp:${userId}`

export function createTotp (encryptionKey: Buffer | undefined, issuer: string, options: { requireKey: boolean }) {
  const totpOf = (secret: string, label: string): OTPAuth.TOTP =>
    new OTPAuth.TOTP({ issuer, label, algorithm: 'SHA1', digits: DIGITS, period: TOTP_PERIOD, secret: OTPAuth.Secret.fromBase32(secret) })

  return {
    /** False when a secret could only be stored in clear and that is refused (production without a key). */
    available: encryptionKey !== undefined || !options.requireKey,

    /** A new 160-bit secret (RFC 4226's recommended size), its URI and a QR code of the URI (PNG data URL). */
    async generate (label: string): Promise<{ secret: string, otpauthUri: string, qrCode: string }> {
      const secret = new OTPAuth.Secret({ size: 20 }).base32
      const otpauthUri = totpOf(secret, label).toString()
      // Loaded at the first enrolment rather than at every start.
      const { default: QRCode } = await import('qrcode')
      const qrCode = await QRCode.toDataURL(otpauthUri, { errorCorrectionLevel: 'M', margin: 2, width: 240 })
      return { secret, otpauthUri, qrCode }
    },

    /** The stored form of a secret. */
    sealSecret (userId: string, secret: string): string {
      if (encryptionKey === undefined && options.requireKey) throw new Error('refusing to store a TOTP secret in clear: KEY_ENCRYPTION_KEY is not set')
      return encryptionKey === undefined ? secret : seal(Buffer.from(secret, 'utf8'), context(userId), encryptionKey)
    },

    openSecret (userId: string, stored: string): string {
      if (!isSealed(stored)) return stored
      if (encryptionKey === undefined) throw new Error('a TOTP secret is sealed; set KEY_ENCRYPTION_KEY to the key it was sealed with')
      return openSealed(stored, context(userId), encryptionKey).toString('utf8')
    },

    /**
     * The time step a code matches at `now` (within ±1 step), or null. Only digits of the
     * right length are tried; anything else is wrong.
     */
    matchStep (secret: string, code: string, now: Date): number | null {
      const token = code.replace(/\s+/g, '')
      if (!/^\d{6}$/.test(token)) return null
      const delta = totpOf(secret, 'x').validate({ token, timestamp: now.getTime(), window: WINDOW })
      if (delta === null) return null
      return Math.floor(now.getTime() / 1000 / TOTP_PERIOD) + delta
    }
  }
}

export type Totp = ReturnType<typeof createTotp>
