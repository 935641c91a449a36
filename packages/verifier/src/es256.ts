/**
 * ECDSA signatures are malleable: when (r, s) is a valid signature, so is (r, n − s). Accepting
 * both would let anyone turn one token into a second, different token string that verifies
 * (which breaks anything keyed on the token's bytes: deny lists, caches, replay records). The
 * service signs only with s ≤ n/2 ("low S") and every verifier of its tokens refuses the other
 * half, so a token has exactly one valid spelling.
 */

/** The order n of P-256's base point, as 32 big-endian bytes. */
const P256_ORDER = Buffer.from('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551', 'hex')
/** ⌊n / 2⌋: the largest s accepted. */
const P256_HALF_ORDER = Buffer.from('7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8', 'hex')

/** True when the JWS ES256 signature (r ‖ s, 64 bytes) has s ≤ n/2. */
export function es256HasLowS (signature: Uint8Array): boolean {
  if (signature.length !== 64) return false
  return Buffer.compare(Buffer.from(signature.buffer, signature.byteOffset + 32, 32), P256_HALF_ORDER) <= 0
}

/** Replaces s by n − s when s > n/2 (in place), so that a signature the signer made is low S. */
export function toLowS (signature: Buffer): Buffer {
  if (es256HasLowS(signature)) return signature
  const s = BigInt('0x' + signature.subarray(32).toString('hex'))
  const n = BigInt('0x' + P256_ORDER.toString('hex'))
  Buffer.from((n - s).toString(16).padStart(64, '0'), 'hex').copy(signature, 32)
  return signature
}
