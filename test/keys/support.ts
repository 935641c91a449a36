/**
 * Test support for tokens and keys: hand-built JWS (so a test controls every header byte and
 * can produce what no well-behaved library would), decoding, and a clock that moves `Date`
 * forward without sleeping.
 */
import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type { Test } from 'tap'
import type { Algorithm } from '../../src/keys/signing-key.js'
import { bearer, login, register } from '../support/app.js'

export const ALGORITHMS: Algorithm[] = ['ES256', 'RS256', 'EdDSA', 'HS256']
export const ASYMMETRIC = ['ES256', 'RS256', 'EdDSA'] as const

/** A JWT_SECRET of 48 random-looking bytes for HS256 runs. */
export const HS_SECRET = 'k3Vq8cJ0s9XoP2bZr7tYwL4mN6dF1gH5aE0uI8oQ2zXcV7bN'

export function envFor (alg: Algorithm, extra: Record<string, string> = {}): Record<string, string> {
  return { JWT_ALGORITHM: alg, ...(alg === 'HS256' ? { JWT_SECRET: HS_SECRET } : {}), ...extra }
}

const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')

export interface Decoded {
  header: Record<string, unknown>
  payload: Record<string, unknown>
}

export function decode (token: string): Decoded {
  const [h, p] = token.split('.')
  return { header: JSON.parse(Buffer.from(h!, 'base64url').toString()), payload: JSON.parse(Buffer.from(p!, 'base64url').toString()) }
}

/** The order of P-256's base point: (r, s) and (r, n − s) are both valid ECDSA signatures. */
export const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n

const int256 = (bytes: Buffer): bigint => BigInt('0x' + bytes.toString('hex'))
const bytes256 = (n: bigint): Buffer => Buffer.from(n.toString(16).padStart(64, '0'), 'hex')

/** An ES256 signature (r ‖ s) with s replaced by n − s when s is above n/2, as the service signs. */
export function lowS (signature: Buffer): Buffer {
  const s = int256(signature.subarray(32))
  return s > P256_ORDER / 2n ? Buffer.concat([signature.subarray(0, 32), bytes256(P256_ORDER - s)]) : signature
}

/** The same ES256 token with s replaced by n − s: mathematically a valid signature too, and a second token string. */
export function highSTwin (token: string): string {
  const [h, p, sig] = token.split('.')
  const raw = Buffer.from(sig!, 'base64url')
  const twin = Buffer.concat([raw.subarray(0, 32), bytes256(P256_ORDER - int256(raw.subarray(32)))])
  return `${h}.${p}.${twin.toString('base64url')}`
}

/** A compact ES256 token with its signature brought to low S (for tokens signed outside the service). */
export function withLowS (token: string): string {
  const [h, p, sig] = token.split('.')
  return `${h}.${p}.${lowS(Buffer.from(sig!, 'base64url')).toString('base64url')}`
}

/** The signature of `input` under `alg`, exactly as JWS wants it (ECDSA in IEEE P1363 form). */
export function signature (alg: string, key: KeyObject | string | Buffer, input: string): string {
  switch (alg) {
    case 'HS256': case 'HS384': case 'HS512':
      return createHmac(`sha${alg.slice(2)}`, key as string | Buffer).update(input).digest('base64url')
    case 'ES256':
      return lowS(sign('sha256', Buffer.from(input), { key: key as KeyObject, dsaEncoding: 'ieee-p1363' })).toString('base64url')
    case 'RS256':
      return sign('sha256', Buffer.from(input), key as KeyObject).toString('base64url')
    case 'EdDSA':
      return sign(null, Buffer.from(input), key as KeyObject).toString('base64url')
    default:
      return ''
  }
}

/** A compact JWS with this header and payload, signed with `key` under `header.alg`. */
export function forge (header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject | string | Buffer | null): string {
  const input = `${b64(header)}.${b64(payload)}`
  return `${input}.${key === null ? '' : signature(String(header.alg), key, input)}`
}

/** A key pair the attacker owns, of the type `alg` needs. */
export function attackerKey (alg: 'ES256' | 'RS256' | 'EdDSA'): KeyObject {
  if (alg === 'ES256') return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
  if (alg === 'RS256') return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
  return generateKeyPairSync('ed25519').privateKey
}

/** The service's own signing key (the private half is needed to show that only the claim is wrong). */
export function serviceKey (app: FastifyInstance): { kid: string, alg: Algorithm, key: KeyObject | string } {
  const k = app.keyRing.signingKey(new Date())
  return { kid: k.kid, alg: k.alg, key: k.alg === 'HS256' ? k.signKey : createPrivateKey(k.signKey) }
}

export interface Session {
  token: string
  header: Record<string, unknown>
  payload: Record<string, unknown>
}

/** Registers a user, logs in, and returns the access token with its decoded parts. */
export async function session (app: FastifyInstance, username = 'alice'): Promise<Session> {
  await register(app, username)
  const { accessToken } = await login(app, { username })
  return { token: accessToken, ...decode(accessToken) }
}

export async function me (app: FastifyInstance, token: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'GET', url: '/api/auth/me', headers: bearer(token) })
}

/** Asserts the one answer every refused Bearer request gets. */
export function assertRefused (t: Test, res: LightMyRequestResponse, code = 'ACCESS_TOKEN_INVALID'): void {
  t.equal(res.statusCode, 401, `401 (got ${res.statusCode} ${res.body})`)
  t.match(res.json(), { statusCode: 401, code })
  t.match(res.headers['www-authenticate'], /^Bearer realm="auth", error="invalid_token"/)
}

/**
 * A catalogue of forged and misdirected variants of a genuine token, each refused by the
 * service and by any correct verifier. `real` is the service's signing key (the claim-only
 * variants are signed with it, so the claim is the only thing wrong).
 */
export function forgeries (genuine: Session, real: { kid: string, alg: Algorithm, key: KeyObject | string }): Array<{ name: string, token: string, code: string }> {
  const now = Math.floor(Date.now() / 1000)
  const resigned = (header: Record<string, unknown>, payload: Record<string, unknown> = {}): string =>
    forge({ ...genuine.header, ...header }, { ...genuine.payload, ...payload }, real.key)
  const out: Array<{ name: string, token: string, code: string }> = []
  const add = (name: string, token: string, code = 'ACCESS_TOKEN_INVALID'): void => { out.push({ name, token, code }) }
  add('alg none', forge({ ...genuine.header, alg: 'none' }, genuine.payload, null))
  if (real.alg !== 'HS256') {
    const publicKey = createPublicKey(real.key as KeyObject)
    add('HS256 with the public key as PEM', forge({ ...genuine.header, alg: 'HS256' }, genuine.payload, publicKey.export({ format: 'pem', type: 'spki' }) as string))
    add('HS256 with the public key as DER', forge({ ...genuine.header, alg: 'HS256' }, genuine.payload, publicKey.export({ format: 'der', type: 'spki' })))
    add('HS256 with the public JWK as JSON', forge({ ...genuine.header, alg: 'HS256' }, genuine.payload, JSON.stringify(publicKey.export({ format: 'jwk' }))))
  }
  const attackerAlg = real.alg === 'HS256' ? 'ES256' : real.alg
  const attacker = attackerKey(attackerAlg)
  add('an attacker key under our kid', forge({ ...genuine.header, alg: attackerAlg }, genuine.payload, attacker))
  add('an attacker key under an unknown kid', forge({ ...genuine.header, alg: attackerAlg, kid: 'attacker' }, genuine.payload, attacker))
  add('an embedded jwk header', forge({ ...genuine.header, alg: attackerAlg, kid: 'attacker', jwk: createPublicKey(attacker).export({ format: 'jwk' }) }, genuine.payload, attacker))
  add('a jku header (real key)', resigned({ jku: 'https://attacker.example/jwks.json' }))
  add('an x5u header (real key)', resigned({ x5u: 'https://attacker.example/cert.pem' }))
  add('no kid (real key)', resigned({ kid: undefined }))
  add('typ JWT (real key)', resigned({ typ: 'JWT' }))
  add('no typ (real key)', resigned({ typ: undefined }))
  add('another issuer (real key)', resigned({}, { iss: 'https://attacker.example' }))
  add('another audience (real key)', resigned({}, { aud: 'https://other-service.example' }))
  add('expired (real key)', resigned({}, { exp: now - 60 }), 'ACCESS_TOKEN_EXPIRED')
  const [h, , s] = genuine.token.split('.')
  add('a changed claim under the genuine signature', `${h}.${Buffer.from(JSON.stringify({ ...genuine.payload, roles: ['admin'] })).toString('base64url')}.${s}`)
  return out
}
