/**
 * Username and password rules (contract + NIST SP 800-63B): NFKC normalisation; usernames of
 * 3–64 letters, digits and `. _ - @ +`, unique case-insensitively; passwords with a minimum
 * and a maximum length, checked against a list of common passwords, with no composition rules.
 * Lengths count Unicode code points, as a person would.
 */
import { dictionary } from '@zxcvbn-ts/language-common'

export const USERNAME_MIN = 3
export const USERNAME_MAX = 64
export const PASSWORD_MAX = 256
const USERNAME_PATTERN = /^[\p{L}\p{M}\p{N}._@+-]+$/u

export type Checked = { ok: true, value: string } | { ok: false, message: string }

export function normalizeUsername (raw: string): string {
  return raw.normalize('NFKC').trim()
}

/** The key that makes usernames unique regardless of case. */
export function usernameKey (normalized: string): string {
  return normalized.toLowerCase()
}

export function checkUsername (raw: string): Checked {
  const value = normalizeUsername(raw)
  const length = [...value].length
  if (length < USERNAME_MIN || length > USERNAME_MAX) {
    return { ok: false, message: `username must be ${USERNAME_MIN} to ${USERNAME_MAX} characters` }
  }
  if (!USERNAME_PATTERN.test(value)) {
    return { ok: false, message: 'username may contain only letters, digits and . _ - @ +' }
  }
  return { ok: true, value }
}

export function createPasswordPolicy (minLength: number) {
  // The bundled list (zxcvbn-ts's 49k most common passwords); only entries long enough to
  // pass the length rule can matter, so only those are kept in memory.
  const common = new Set(
    (dictionary['passwords-common'] as string[]).filter((p) => [...p].length >= minLength).map((p) => p.toLowerCase())
  )
  return {
    minLength,
    check (raw: string): Checked {
      const value = raw.normalize('NFKC')
      const length = [...value].length
      if (length < minLength) return { ok: false, message: `password must be at least ${minLength} characters` }
      if (length > PASSWORD_MAX) return { ok: false, message: `password must be at most ${PASSWORD_MAX} characters` }
      if (common.has(value.toLowerCase())) return { ok: false, message: 'password is too common; choose another' }
      return { ok: true, value }
    }
  }
}

export type PasswordPolicy = ReturnType<typeof createPasswordPolicy>
