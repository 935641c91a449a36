/**
 * Baseline: raw access-token verification in a loop, on one core, with nothing else: ES256
 * tokens shaped like the service's, verified round-robin (1,000 distinct tokens, no cache),
 * each way for BENCH_DURATION seconds after BENCH_WARMUP seconds:
 * - fast-jwt, a verifier made once with the key (what @fastify/jwt verifies with);
 * - node:crypto directly, synchronously: split, parse header and payload, one `crypto.verify`
 *   with a bare KeyObject and the signature in DER (node's fast path; an options object with
 *   `dsaEncoding` is slower), the claim checks: the floor under any library, and the fastest
 *   of the three;
 * - jose (what the verifier plugin uses).
 * Prints one JSON line.
 */
import { generateKeyPairSync, randomUUID, verify as cryptoVerify } from 'node:crypto'
import { createSigner, createVerifier } from 'fast-jwt'
import { jwtVerify } from 'jose'

const duration = Number(process.env.BENCH_DURATION ?? 10)
const warmup = Number(process.env.BENCH_WARMUP ?? 2)
const iss = 'http://localhost:8787'
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const sign = createSigner({ key: privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, algorithm: 'ES256', kid: 'k1', header: { alg: 'ES256', typ: 'at+jwt' }, expiresIn: 900_000 })
const tokens = Array.from({ length: 1000 }, (_, i) => sign({ iss, aud: iss, sub: `user-${i}`, sid: randomUUID(), jti: randomUUID(), roles: ['user'] }))

const fastVerify = createVerifier({
  key: publicKey.export({ format: 'pem', type: 'spki' }) as string,
  algorithms: ['ES256'],
  allowedIss: iss,
  allowedAud: iss,
  requiredClaims: ['iss', 'aud', 'sub', 'iat', 'exp', 'jti', 'sid'],
  checkTyp: 'at+jwt',
  cache: false
})
const joseOptions = { issuer: iss, audience: iss, algorithms: ['ES256'], typ: 'at+jwt', requiredClaims: ['iss', 'aud', 'sub', 'iat', 'exp', 'jti', 'sid'] }

async function loop (verifyOne: (token: string) => unknown): Promise<number> {
  let i = 0
  const run = async (seconds: number): Promise<{ count: number, seconds: number }> => {
    const started = performance.now()
    const until = started + seconds * 1000
    let count = 0
    while (performance.now() < until) {
      for (let k = 0; k < 100; k++) {
        const r = verifyOne(tokens[i++ % tokens.length]!)
        if (r instanceof Promise) await r
      }
      count += 100
    }
    return { count, seconds: (performance.now() - started) / 1000 }
  }
  await run(warmup)
  const measured = await run(duration)
  return measured.count / measured.seconds
}

/** An ES256 signature as JWS carries it (r ‖ s) in DER, what node takes with a bare KeyObject. */
function joseToDer (signature: Buffer): Buffer {
  const integer = (bytes: Buffer): Buffer => {
    let start = 0
    while (start < bytes.length - 1 && bytes[start] === 0) start++
    const body = bytes.subarray(start)
    const pad = (body[0]! & 0x80) !== 0 ? [0] : []
    return Buffer.concat([Buffer.from([0x02, pad.length + body.length, ...pad]), body])
  }
  const r = integer(signature.subarray(0, 32))
  const s = integer(signature.subarray(32))
  return Buffer.concat([Buffer.from([0x30, r.length + s.length]), r, s])
}

const parse = (segment: string): Record<string, unknown> => JSON.parse(Buffer.from(segment, 'base64url').toString('utf8')) as Record<string, unknown>
function nodeVerify (token: string): Record<string, unknown> {
  const [h, p, s] = token.split('.') as [string, string, string]
  const header = parse(h)
  if (header.alg !== 'ES256' || header.kid !== 'k1' || header.typ !== 'at+jwt') throw new Error('header')
  const payload = parse(p)
  if (!cryptoVerify('sha256', Buffer.from(`${h}.${p}`, 'latin1'), publicKey, joseToDer(Buffer.from(s, 'base64url')))) throw new Error('signature')
  if (payload.iss !== iss || payload.aud !== iss || typeof payload.sid !== 'string' || (payload.exp as number) * 1000 < Date.now()) throw new Error('claims')
  return payload
}

const fastJwt = await loop((t) => fastVerify(t))
const node = await loop((t) => nodeVerify(t))
const jose = await loop(async (t) => await jwtVerify(t, publicKey, joseOptions))
console.log(JSON.stringify({ fastJwtPerSec: fastJwt, nodePerSec: node, josePerSec: jose }))
