/**
 * Account tokens (verification, password reset, address change and its undo): 32 random bytes,
 * base64url (43 characters), mailed in a link; the database keeps only their SHA-256
 * (db/repositories/account-tokens.ts). Found by that digest, an exact-match lookup of a
 * 256-bit value: nothing about the token leaks through the lookup's timing.
 */
import { createHash, randomBytes } from 'node:crypto'

const TOKEN_BYTES = 32
const TOKEN = /^[A-Za-z0-9_-]{43}$/

export function newAccountToken (): { token: string, tokenHash: Buffer } {
  const token = randomBytes(TOKEN_BYTES).toString('base64url')
  return { token, tokenHash: hashAccountToken(token)! }
}

/** The digest a token is stored under, or null for a string that is no token (no lookup needed). */
export function hashAccountToken (token: string): Buffer | null {
  if (!TOKEN.test(token)) return null
  return createHash('sha256').update(token).digest()
}
