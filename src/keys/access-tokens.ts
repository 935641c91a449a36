/**
 * Access tokens: what this service signs and what it accepts, in one place. Verification is
 * @fastify/jwt's, signing is fast-jwt's (the library @fastify/jwt signs and verifies with);
 * this module gives them the rules:
 *
 * - the key decides the algorithm, never the token: the header's `kid` must name a key of the
 *   ring and its `alg` must be that key's algorithm (this is what stops `none` and HS256 signed
 *   with the public key), and the allowed algorithms are listed (the library would otherwise
 *   accept any the key fits);
 * - headers that point at other keys (`jku`, `x5u`, `jwk`, `x5c`, `x5t`, `x5t#S256`) or demand
 *   extensions (`crit`) are refused;
 * - `typ` is `at+jwt`; issuer, audience and the required claims are pinned; `exp` and `nbf`
 *   are checked with the clock tolerance, after the signature, so an expired token is reported
 *   as expired only when its signature is good;
 * - ES256 signatures are low S only (packages/verifier/src/es256.ts): the signer's random S is
 *   normalised after signing, and a high-S twin is refused before the signature is checked;
 * - a token whose signature was checked is remembered (fast-jwt's verify cache, one per ring
 *   key, bounded, each entry dropped at the token's `exp`), so a client presenting the same
 *   token again costs no second signature check. What the cache cannot hide: the key is looked
 *   up in the ring before the cache is consulted, so a revoked key refuses its tokens at once,
 *   and the session (`sid`) is checked in the database after it on every request
 *   (plugins/authenticate.ts), so a logout takes effect at once.
 * @see https://github.com/fastify/fastify-jwt
 */
import { randomUUID } from 'node:crypto'
import type { FastifyJWTOptions } from '@fastify/jwt'
import { createSigner } from 'fast-jwt'
import type { FastifyRequest } from 'fastify'
import { es256HasLowS, toLowS } from '../../packages/verifier/src/es256.js'
import type { AccessTokenClaims } from '../../packages/verifier/src/index.js'
import type { Config } from '../config.js'
import { AccessTokenExpired, AccessTokenInvalid, AuthorizationRequired } from '../errors.js'
import type { KeyRing, RingKey } from './key-ring.js'
import type { Algorithm } from './signing-key.js'

/** The claims this service signs; the verifier plugin exposes the same type to other services. */
export type AccessClaims = AccessTokenClaims

export interface AccessSubject {
  userId: string
  sessionId: string
  roles: string[]
  /** The session's authentication methods and time (`amr`, `auth_time`); kept across its refreshes. */
  amr?: string[]
  authTime?: Date
  /** Null or absent for an account without an address (no `email_verified` claim). */
  emailVerified?: boolean | null
}

export interface IssuedAccessToken { accessToken: string, expiresIn: number }

/** Headers that point at other keys or demand extensions: a token carrying any of them is refused. */
export const FOREIGN_KEY_HEADERS = ['jku', 'x5u', 'jwk', 'x5c', 'x5t', 'x5t#S256', 'crit'] as const
const REQUIRED_CLAIMS = ['iss', 'aud', 'sub', 'iat', 'exp', 'jti', 'sid']
const TYP = 'at+jwt'
/** Verified tokens remembered per ring key; past this, the least recently presented are dropped. */
export const VERIFIED_TOKENS_CACHED = 10_000
const BEARER = /^Bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*) *$/i

/** The algorithms a ring key may have: HS256 only when the service is configured for it. */
export function allowedAlgorithms (config: Config): Algorithm[] {
  return ['ES256', 'RS256', 'EdDSA', ...(config.jwt.algorithm === 'HS256' ? ['HS256' as const] : [])]
}

/**
 * The Bearer token of a request, or the error it gets: 401 with a challenge and no error code
 * when there is no Authorization header, invalid_token when it is not a compact JWS.
 */
export function bearerToken (request: FastifyRequest): string {
  const authorization = request.headers.authorization
  if (authorization === undefined || authorization === '') throw new AuthorizationRequired()
  const bearer = BEARER.exec(authorization)
  if (bearer === null) throw new AccessTokenInvalid()
  return bearer[1]!
}

interface DecodedToken { header: Record<string, unknown>, signature?: string }

/**
 * The @fastify/jwt registration: verification keys resolved by `kid` from the ring on every
 * request, the claim rules, the verify cache behind the key. Nothing signs through the registered secret: every token is signed by
 * `createAccessTokenIssuer`, with the key it chose.
 */
export function accessTokenJwtOptions (config: Config, ring: KeyRing): FastifyJWTOptions {
  const algorithms = allowedAlgorithms(config)
  const resolve = async (decoded: DecodedToken): Promise<string> => {
    const { header } = decoded
    if (FOREIGN_KEY_HEADERS.some((h) => header[h] !== undefined)) throw new AccessTokenInvalid()
    if (typeof header.kid !== 'string') throw new AccessTokenInvalid()
    const key = ring.verificationKey(header.kid) ?? await ring.findVerificationKey(header.kid)
    if (key === undefined || key.alg !== header.alg || !algorithms.includes(key.alg)) throw new AccessTokenInvalid()
    // One token string, one signature: the high-S twin (r, n − s) of an ES256 signature is refused.
    if (key.alg === 'ES256' && !es256HasLowS(Buffer.from(decoded.signature ?? '', 'base64url'))) throw new AccessTokenInvalid()
    return key.verifyKey
  }
  return {
    secret: {
      private: (_request: unknown, _payload: unknown, cb: (err: Error | null) => void) => {
        cb(new Error('access tokens are signed by createAccessTokenIssuer (src/keys/access-tokens.ts), with the key it chose'))
      },
      public: async (_request: FastifyRequest, decoded: DecodedToken) => await resolve(decoded)
    },
    decode: { complete: true },
    verify: {
      algorithms,
      allowedIss: config.jwt.issuer,
      allowedAud: config.jwt.audience,
      checkTyp: TYP,
      requiredClaims: REQUIRED_CLAIMS,
      clockTolerance: config.jwt.clockToleranceSeconds * 1000,
      // @fastify/jwt resolves the key (above) before it asks the key's verifier, so a cached
      // answer never outlives a revoked key; the session check follows every answer.
      cache: VERIFIED_TOKENS_CACHED,
      extractToken: bearerToken
    }
  } as unknown as FastifyJWTOptions
}

/**
 * The claims of a verified token, or invalid_token when a claim the library does not type is of
 * the wrong type (the session lookup keys on `sid` and `sub`).
 */
export function verifiedClaims (claims: Record<string, unknown>): AccessClaims {
  if (typeof claims.sub !== 'string' || typeof claims.sid !== 'string' || typeof claims.jti !== 'string' || typeof claims.iat !== 'number') {
    throw new AccessTokenInvalid()
  }
  return claims as unknown as AccessClaims
}

/** What a failed verification answers: expired (signature good, `exp` passed) or invalid. */
export function verificationError (err: unknown): Error {
  if (err instanceof AuthorizationRequired) return err
  return (err as { code?: string }).code === 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED' ? new AccessTokenExpired() : new AccessTokenInvalid()
}

/** The same ES256 token with its signature brought to the low S, the one spelling verifiers accept. */
function withLowS (token: string): string {
  const dot = token.lastIndexOf('.')
  return `${token.slice(0, dot + 1)}${toLowS(Buffer.from(token.slice(dot + 1), 'base64url')).toString('base64url')}`
}

/**
 * The signer of access tokens: the claims, the lifetime with its optional jitter (tokens of
 * clients that logged in together do not all expire together), and the signature with the key
 * the caller chose. One fast-jwt signer per ring key, made at the key's first token: @fastify/jwt's
 * `jwt.sign` would make a new signer, and parse the key again, on every call that names a key.
 * Keyed by the ring's key object, so a reloaded ring gets fresh signers and old ones go.
 */
export function createAccessTokenIssuer (config: Config) {
  const { issuer, audience, accessTokenTtl: ttl, accessTokenJitter: jitter } = config.jwt
  const signers = new WeakMap<RingKey, (payload: Record<string, unknown>) => string>()
  const signerOf = (key: RingKey): (payload: Record<string, unknown>) => string => {
    let signer = signers.get(key)
    if (signer === undefined) {
      signer = createSigner({ key: key.signKey, algorithm: key.alg, kid: key.kid, header: { alg: key.alg, typ: TYP } })
      signers.set(key, signer)
    }
    return signer
  }
  return function issue (key: RingKey, subject: AccessSubject, now: Date): IssuedAccessToken {
    const expiresIn = ttl - Math.floor(Math.random() * jitter * ttl)
    const iat = Math.floor(now.getTime() / 1000)
    const claims: Record<string, unknown> = { iss: issuer, aud: audience, sub: subject.userId, jti: randomUUID(), sid: subject.sessionId, roles: subject.roles, iat, exp: iat + expiresIn }
    if (subject.amr !== undefined) claims.amr = subject.amr
    if (subject.authTime !== undefined) claims.auth_time = Math.floor(subject.authTime.getTime() / 1000)
    if (typeof subject.emailVerified === 'boolean') claims.email_verified = subject.emailVerified
    const token = signerOf(key)(claims)
    return { accessToken: key.alg === 'ES256' ? withLowS(token) : token, expiresIn }
  }
}
