/**
 * Verification of this service's own access tokens, on every Bearer request.
 *
 * Why not fast-jwt (what @fastify/jwt verifies with) or jose (which the verifier plugin uses): measured on
 * the /me path, fast-jwt's verification cost a third more than the signature itself. It hands
 * node:crypto the key wrapped in an options object, which node checks by throwing and catching
 * twice (about 30 µs per ES256 token), and its per-kid key callback adds a promise chain on top.
 * Here the ring imports each key once (a KeyObject), the signature is checked with the
 * asynchronous `crypto.verify`, which runs on libuv's thread pool instead of the event loop, and
 * the rules are the same as before, written out:
 *
 * - a compact JWS of exactly three base64url segments; header and payload are JSON objects;
 * - the header's `kid` must name a key of the ring and its `alg` must be that key's algorithm
 *   (the key decides the algorithm, never the token: this is what stops `none` and HS256 signed
 *   with the public key); `jku`, `x5u`, `jwk`, `x5c`, `x5t`, `x5t#S256` and `crit` are refused;
 * - an ES256 signature must have the low S (s ≤ n/2): its twin (r, n − s) is refused;
 * - `typ` must be `at+jwt` (or `application/at+jwt`, any case);
 * - `iss`, `aud`, `sub`, `iat`, `exp`, `jti` and `sid` must be present; `iss` must equal the
 *   issuer, `aud` the audience (or an array holding it); `exp` and `nbf` are numbers checked
 *   with the clock tolerance; `sub`, `sid` and `jti` are strings.
 *
 * The signature is checked before any claim is trusted, and an expired token is reported as
 * expired only when its signature is good.
 */
import { createHmac, timingSafeEqual, verify as cryptoVerify, type KeyObject } from 'node:crypto'
import { es256HasLowS } from '../../packages/verifier/src/es256.js'
import type { AccessTokenClaims } from '../../packages/verifier/src/index.js'
import type { Algorithm } from './signing-key.js'

export interface TokenPolicy {
  issuer: string
  audience: string
  clockToleranceSeconds: number
  /** The algorithms a ring key may have; a key of any other algorithm verifies nothing. */
  algorithms: readonly Algorithm[]
}

export interface VerificationKey {
  kid: string
  alg: Algorithm
  verifyKeyObject: KeyObject
}

/** Why a token was refused: `expired` (signature good, `exp` passed) or `invalid` (everything else). */
export class TokenRejected extends Error {
  constructor (readonly reason: 'expired' | 'invalid', detail: string) {
    super(detail)
    this.name = 'TokenRejected'
  }
}

/** Headers that point at other keys or demand extensions: a token carrying any of them is refused. */
export const FOREIGN_KEY_HEADERS = ['jku', 'x5u', 'jwk', 'x5c', 'x5t', 'x5t#S256', 'crit'] as const
const REQUIRED_CLAIMS = ['iss', 'aud', 'sub', 'iat', 'exp', 'jti', 'sid'] as const
const SEGMENT = /^[A-Za-z0-9_-]+$/

const invalid = (detail: string): TokenRejected => new TokenRejected('invalid', detail)

function jsonObject (segment: string, what: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'))
  } catch {
    throw invalid(`the ${what} is not JSON`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(`the ${what} is not a JSON object`)
  return value as Record<string, unknown>
}

/**
 * An ES256 signature as JWS carries it (r ‖ s, 32 bytes each) in the DER form node:crypto takes
 * with a bare KeyObject (giving node `dsaEncoding: 'ieee-p1363'` needs the slow options object).
 */
export function joseToDer (signature: Buffer): Buffer {
  if (signature.length !== 64) throw invalid('an ES256 signature is 64 bytes')
  const integer = (bytes: Buffer): Buffer => {
    let start = 0
    while (start < bytes.length - 1 && bytes[start] === 0) start++
    const body = bytes.subarray(start)
    const pad = (body[0]! & 0x80) !== 0 ? 1 : 0
    const out = Buffer.allocUnsafe(2 + pad + body.length)
    out[0] = 0x02
    out[1] = pad + body.length
    if (pad === 1) out[2] = 0
    body.copy(out, 2 + pad)
    return out
  }
  const r = integer(signature.subarray(0, 32))
  const s = integer(signature.subarray(32))
  return Buffer.concat([Buffer.from([0x30, r.length + s.length]), r, s])
}

async function signatureHolds (key: VerificationKey, input: string, signature: Buffer): Promise<boolean> {
  const data = Buffer.from(input, 'latin1')
  switch (key.alg) {
    case 'HS256': {
      // A MAC costs about a microsecond: no reason to leave the event loop for it.
      const expected = createHmac('sha256', key.verifyKeyObject).update(data).digest()
      return expected.length === signature.length && timingSafeEqual(expected, signature)
    }
    case 'ES256': {
      const der = joseToDer(signature)
      // One token string, one signature: (r, n − s) is refused (src/verifier/es256.ts).
      if (!es256HasLowS(signature)) return false
      return await verifyAsync('sha256', data, key.verifyKeyObject, der)
    }
    case 'RS256':
      return await verifyAsync('sha256', data, key.verifyKeyObject, signature)
    case 'EdDSA':
      return await verifyAsync(null, data, key.verifyKeyObject, signature)
    default:
      return false
  }
}

async function verifyAsync (digest: string | null, data: Buffer, key: KeyObject, signature: Buffer): Promise<boolean> {
  return await new Promise((resolve) => {
    cryptoVerify(digest, data, key, signature, (err, ok) => { resolve(err === null && ok) })
  })
}

function audienceHolds (aud: unknown, audience: string): boolean {
  if (typeof aud === 'string') return aud === audience
  return Array.isArray(aud) && aud.length > 0 && aud.every((a) => typeof a === 'string') && aud.includes(audience)
}

/**
 * `findKey(kid)` answers the ring's key for a kid (it may reload the ring for an unknown kid,
 * hence a promise or a value). Returns the claims, or throws TokenRejected.
 */
export function createTokenVerifier (policy: TokenPolicy, findKey: (kid: string) => VerificationKey | undefined | Promise<VerificationKey | undefined>) {
  const toleranceMs = policy.clockToleranceSeconds * 1000
  const allowed = new Set<string>(policy.algorithms)

  return async function verifyAccessToken (token: string, nowMs: number = Date.now()): Promise<AccessTokenClaims> {
    const first = token.indexOf('.')
    const second = first < 0 ? -1 : token.indexOf('.', first + 1)
    if (first <= 0 || second < 0 || token.indexOf('.', second + 1) !== -1) throw invalid('not a compact JWS')
    const headerSegment = token.slice(0, first)
    const payloadSegment = token.slice(first + 1, second)
    const signatureSegment = token.slice(second + 1)
    if (!SEGMENT.test(headerSegment) || !SEGMENT.test(payloadSegment) || !SEGMENT.test(signatureSegment)) throw invalid('not base64url')

    const header = jsonObject(headerSegment, 'header')
    for (const name of FOREIGN_KEY_HEADERS) if (header[name] !== undefined) throw invalid(`the ${name} header is refused`)
    if (typeof header.typ !== 'string' || header.typ.toLowerCase().replace(/^application\//, '') !== 'at+jwt') throw invalid('typ is not at+jwt')
    if (typeof header.kid !== 'string' || typeof header.alg !== 'string') throw invalid('kid and alg are required')
    const found = findKey(header.kid)
    const key = found instanceof Promise ? await found : found
    if (key === undefined || key.alg !== header.alg || !allowed.has(key.alg)) throw invalid('no key of the ring verifies this token')

    const payload = jsonObject(payloadSegment, 'payload')
    if (!await signatureHolds(key, token.slice(0, second), Buffer.from(signatureSegment, 'base64url'))) throw invalid('bad signature')

    for (const claim of REQUIRED_CLAIMS) if (payload[claim] === undefined) throw invalid(`the ${claim} claim is required`)
    const { iss, aud, sub, sid, jti, exp, iat, nbf } = payload
    if (iss !== policy.issuer) throw invalid('wrong issuer')
    if (!audienceHolds(aud, policy.audience)) throw invalid('wrong audience')
    if (typeof sub !== 'string' || typeof sid !== 'string' || typeof jti !== 'string') throw invalid('sub, sid and jti are strings')
    if (typeof iat !== 'number' || typeof exp !== 'number' || !Number.isFinite(exp)) throw invalid('iat and exp are numbers')
    if (nbf !== undefined && (typeof nbf !== 'number' || nowMs < nbf * 1000 - toleranceMs)) throw invalid('not active yet')
    if (nowMs > exp * 1000 + toleranceMs) throw new TokenRejected('expired', 'expired')
    return payload as unknown as AccessTokenClaims
  }
}
