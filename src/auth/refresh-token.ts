/**
 * Refresh tokens are opaque: 48 bytes, base64url, 64 characters: a 16-byte selector and a
 * 32-byte (256-bit) secret. The selector says which row to read: it is the row's id, encrypted
 * with AES-128 under a key derived from the server's secret, so a token reveals neither how
 * many tokens the service has issued nor anything an attacker could count on. The database
 * keeps only SHA-256 of the secret, compared in constant time with the presented secret's: a
 * database leak yields no usable token, and the lookup by id gives nothing to time.
 *
 * Why a selector and not a lookup by digest: a digest is uniformly random, so every rotation read
 * and wrote a random page of an index over all tokens, and at a million sessions those pages
 * no longer fit in any cache. Ids are appended in order, so a rotation touches the newest pages.
 *
 * Successors are derived, not drawn: successor secret = HMAC-SHA256(key, "rt-successor" ||
 * parent secret). The contract requires that a spent token presented again within the reuse
 * interval gets *the same* new token as the first use, yet the server stores only digests and
 * so cannot read that token back. Deriving it lets the server recompute it from the presented
 * parent (and find its row through the parent's `successor_id`): only a holder of the parent
 * can do so, the key never leaves the server, and the output of a keyed PRF over a 256-bit
 * random input is as unpredictable as a fresh draw. The first secret of each session comes
 * from the CSPRNG.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, createSecretKey, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'

export const SECRET_BYTES = 32
const SELECTOR_BYTES = 16
const TOKEN_BYTES = SELECTOR_BYTES + SECRET_BYTES
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{64}$/

/** What a presented token names: its row, by id, and the secret to check against the row's digest. */
export interface ParsedRefreshToken {
  id: number
  secret: Buffer
}

export function hashRefreshToken (secret: Buffer): Buffer {
  return createHash('sha256').update(secret).digest()
}

/** True when `secret` is the one whose digest is `stored`, in time independent of where they differ. */
export function secretMatches (stored: Buffer, secret: Buffer): boolean {
  const digest = hashRefreshToken(secret)
  return stored.length === digest.length && timingSafeEqual(stored, digest)
}

/**
 * Encoding, parsing and derivation of refresh tokens under the server's 32-byte secret
 * (`refresh-token-derivation` in server_secrets, shared by every instance on the database).
 */
export function createRefreshTokenCodec (serverKey: Buffer) {
  // createHmac with a Buffer key goes through a check in Node that throws and catches an error
  // internally on every call, which costs several times the HMAC; a KeyObject made once does not
  // (docs/decisions/0012-small-crypto-on-the-event-loop.md).
  const successorKey = createSecretKey(serverKey)
  const selectorKey = Buffer.from(hkdfSync('sha256', serverKey, Buffer.alloc(0), 'auth-service refresh-token selector v1', 16))
  // One block each way: ECB over a single block is the bare AES permutation, and a cipher
  // object with padding off keeps no state between blocks, so these two are made once.
  const encryptor = createCipheriv('aes-128-ecb', selectorKey, null).setAutoPadding(false)
  const decryptor = createDecipheriv('aes-128-ecb', selectorKey, null).setAutoPadding(false)

  return {
    /** A fresh secret from the CSPRNG (the first token of a session). */
    generateSecret: (): Buffer => randomBytes(SECRET_BYTES),

    deriveSuccessor: (parent: Buffer): Buffer => createHmac('sha256', successorKey).update('rt-successor').update(parent).digest(),

    /** The token for row `id` with `secret`. The selector's block is the id and 8 zero bytes. */
    encode (id: number, secret: Buffer): string {
      const block = Buffer.alloc(SELECTOR_BYTES)
      block.writeBigUInt64BE(BigInt(id), 0)
      return Buffer.concat([encryptor.update(block), secret]).toString('base64url')
    },

    /**
     * What the token names, or null when it is not one of ours in shape. A selector that does
     * not decrypt to an id and 8 zero bytes was not made here (a random one passes with
     * probability 2^-64) and is refused without touching the database.
     */
    parse (token: string): ParsedRefreshToken | null {
      if (!TOKEN_PATTERN.test(token)) return null
      // 48 bytes are 64 characters exactly: every such string decodes, and only one way.
      const bytes = Buffer.from(token, 'base64url')
      if (bytes.length !== TOKEN_BYTES) return null
      const block = decryptor.update(bytes.subarray(0, SELECTOR_BYTES))
      if (block.readBigUInt64BE(8) !== 0n) return null
      const id = block.readBigUInt64BE(0)
      if (id === 0n || id > BigInt(Number.MAX_SAFE_INTEGER)) return null
      return { id: Number(id), secret: bytes.subarray(SELECTOR_BYTES) }
    }
  }
}

export type RefreshTokenCodec = ReturnType<typeof createRefreshTokenCodec>
