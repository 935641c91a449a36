/**
 * Baseline: raw access-token verification in a loop, on one core, with nothing else: ES256
 * tokens shaped like the service's, verified round-robin (1,000 distinct tokens, no cache) by
 * fast-jwt (what the service uses) and by jose (what the verifier plugin uses), each for
 * BENCH_DURATION seconds after BENCH_WARMUP seconds. Prints one JSON line.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto'
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

const fastJwt = await loop((t) => fastVerify(t))
const jose = await loop(async (t) => await jwtVerify(t, publicKey, joseOptions))
console.log(JSON.stringify({ fastJwtPerSec: fastJwt, josePerSec: jose }))
