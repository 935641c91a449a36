/**
 * Recovery codes: ten single-use codes of 12 characters from a 32-letter alphabet without look-alikes
 * (60 random bits each), shown once, written `xxxx-xxxx-xxxx`.
 *
 * Stored as HMAC-SHA256 under a server secret (`recovery-code-key` in server_secrets, sealed
 * under KEY_ENCRYPTION_KEY when set), with the user id in the message, not as argon2 hashes: a
 * slow hash protects low-entropy secrets against offline guessing, and 60 random bits are
 * beyond offline guessing already (2^60 HMACs per code); online guessing is bounded by the
 * per-account login throttle. A keyed digest also lets a code be found by one indexed equality
 * and spent by one conditional UPDATE, and a database copy without the key yields nothing.
 */
import { createHmac, randomInt } from 'node:crypto'

export const RECOVERY_CODE_COUNT = 10
/** 32 symbols: no `i`, `l`, `o`, `1`, which read alike. */
const ALPHABET = 'abcdefghjkmnpqrstuvwxyz023456789'
const LENGTH = 12

/** As typed, in any case, with or without the dashes and spaces. */
export function normalizeRecoveryCode (raw: string): string {
  return raw.toLowerCase().replace(/[\s-]+/g, '')
}

export function createRecoveryCodes (key: Buffer) {
  return {
    generate (): string[] {
      return Array.from({ length: RECOVERY_CODE_COUNT }, () => {
        let code = ''
        for (let i = 0; i < LENGTH; i++) code += ALPHABET[randomInt(ALPHABET.length)]
        return `${code.slice(0, 4)}-${code.slice(4, 8)}-${code.slice(8)}`
      })
    },
    digest (userId: string, code: string): Buffer {
      return createHmac('sha256', key).update(`${userId}\n${normalizeRecoveryCode(code)}`).digest()
    }
  }
}

export type RecoveryCodes = ReturnType<typeof createRecoveryCodes>
