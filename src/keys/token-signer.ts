/**
 * Signing of access tokens. The compact JWS is put together here (header, payload, base64url)
 * and the signature is computed by the asynchronous `crypto.sign`, on libuv's thread pool: the
 * event loop pays about 8 µs per ES256 token instead of the 25 µs of a synchronous signature
 * (fast-jwt, which signed them before), and an RS256 signature (about a millisecond) no longer
 * stops it at all. HS256 is an HMAC of a microsecond and stays on the event loop.
 *
 * The key is the ring's private KeyObject, imported once; passing node a bare KeyObject (not an
 * options object with `dsaEncoding`) keeps it on its fast path, so an ES256 signature comes back
 * in DER and is converted to JWS's r ‖ s here.
 */
import { createHmac, sign as cryptoSign, type KeyObject } from 'node:crypto'
import { toLowS } from '../../packages/verifier/src/es256.js'
import type { Algorithm } from './signing-key.js'

export interface SigningKey {
  kid: string
  alg: Algorithm
  /** The private key (or the HS256 secret), imported once. */
  signKeyObject: KeyObject
}

/** An ES256 signature from DER (SEQUENCE of two INTEGERs) to the 64 bytes r ‖ s that JWS carries. */
export function derToJose (der: Buffer): Buffer {
  if (der[0] !== 0x30) throw new Error('not a DER ECDSA signature')
  let offset = (der[1]! & 0x80) === 0 ? 2 : 2 + (der[1]! & 0x7f)
  const out = Buffer.alloc(64)
  for (let i = 0; i < 2; i++) {
    if (der[offset] !== 0x02) throw new Error('not a DER ECDSA signature')
    const length = der[offset + 1]!
    let value = der.subarray(offset + 2, offset + 2 + length)
    // DER integers are minimal and signed: a leading zero byte when the top bit is set, fewer
    // than 32 bytes when the value is small. JWS wants each exactly 32 bytes, big-endian.
    while (value.length > 32 && value[0] === 0) value = value.subarray(1)
    if (value.length > 32) throw new Error('an ES256 signature integer is longer than 32 bytes')
    value.copy(out, i * 32 + 32 - value.length)
    offset += 2 + length
  }
  return out
}

/** A signer for one key: claims in, compact JWS out. */
export function createTokenSigner (key: SigningKey): (claims: Record<string, unknown>) => Promise<string> {
  const header = Buffer.from(JSON.stringify({ alg: key.alg, typ: 'at+jwt', kid: key.kid })).toString('base64url')
  const digest = key.alg === 'EdDSA' ? null : 'sha256'
  return async (claims) => {
    const input = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`
    const data = Buffer.from(input, 'latin1')
    if (key.alg === 'HS256') return `${input}.${createHmac('sha256', key.signKeyObject).update(data).digest('base64url')}`
    const signature = await new Promise<Buffer>((resolve, reject) => {
      cryptoSign(digest, data, key.signKeyObject, (err, result) => { if (err !== null) reject(err); else resolve(result) })
    })
    // ES256: always the low S, the one spelling verifiers accept (packages/verifier/src/es256.ts).
    return `${input}.${(key.alg === 'ES256' ? toLowS(derToJose(signature)) : signature).toString('base64url')}`
  }
}
