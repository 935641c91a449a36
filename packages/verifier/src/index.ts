/**
 * Verifies this service's access tokens inside another Fastify service, offline, from the
 * service's public JWK Set:
 *
 *   import verifier from '@auth-service/verifier'
 *   await app.register(verifier, { issuer: 'https://auth.example.com', audience: 'https://auth.example.com' })
 *   app.get('/orders', { onRequest: app.authenticate }, async (request) => request.user.sub)
 *
 * What it checks, whatever the token's header says: the signature with a key of the JWK Set
 * chosen by `kid` (a token without one is refused) and only with that key's own algorithm, one
 * of ES256/RS256/EdDSA (never HS256, never `none`), an ES256 signature only with the low S (its
 * twin (r, n − s) is refused: one token string, one signature); no header that points at another key
 * (`jku`, `x5u`, `jwk`, `x5c`, ...); `typ: at+jwt`; `iss` and `aud` exactly; `exp` with a small
 * clock tolerance. The key set is fetched by `jose`'s createRemoteJWKSet: cached for
 * `cacheMaxAge`, refetched at once for an unknown kid unless it was fetched within `cooldown`
 * (so new keys are picked up without a restart, and forged kids cannot make it hammer the
 * service). If the service cannot be reached, the last key set fetched is still used.
 *
 * Failures answer exactly like the service: 401 `{ statusCode, code, message }` with the codes
 * AUTHORIZATION_REQUIRED, ACCESS_TOKEN_INVALID or ACCESS_TOKEN_EXPIRED and the same
 * `WWW-Authenticate` header; 503 when no key set has ever been fetched.
 *
 * Step-up per route (RFC 9470): `app.authenticateWith({ requireAmr, maxAuthAge })` is
 * `authenticate` plus a check of how the user authenticated: `requireAmr` lists methods of which
 * the token's `amr` must hold at least one, `maxAuthAge` bounds the age of its `auth_time`.
 * A token that fails either gets 401 INSUFFICIENT_USER_AUTHENTICATION with
 * `WWW-Authenticate: Bearer error="insufficient_user_authentication"` and the hints
 * `acr_values` (the accepted methods) and `max_age` (seconds): the client steps up with
 * POST /api/auth/reauthenticate and retries with the new access token.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import {
  createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type FlattenedJWSInput, type JSONWebKeySet, type JWTHeaderParameters
} from 'jose'
import { AccessTokenExpired, AccessTokenInvalid, AuthorizationRequired, bearerChallenge, InsufficientUserAuthentication, ServiceUnavailable, stepUpChallenge } from './errors.js'
import { es256HasLowS } from './es256.js'

export type VerifierAlgorithm = 'ES256' | 'RS256' | 'EdDSA'

export const VERIFIER_ALGORITHMS: readonly VerifierAlgorithm[] = ['ES256', 'RS256', 'EdDSA']

export interface VerifierOptions {
  /** The service's `iss` (JWT_ISSUER, by default its PUBLIC_URL). Required. */
  issuer: string
  /** The `aud` the tokens carry (JWT_AUDIENCE, by default the service's PUBLIC_URL). Required. */
  audience: string
  /** Where the JWK Set is. Default: `<issuer>/.well-known/jwks.json`. */
  jwksUrl?: string | URL
  /** Algorithms accepted (each key is still used only with its own). Default: ES256, RS256, EdDSA. */
  algorithms?: VerifierAlgorithm[]
  /** Seconds by which `exp` may be past. Default 5. */
  clockTolerance?: number
  /** Milliseconds after a fetch during which an unknown kid does not trigger another. Default 30000. */
  cooldown?: number
  /** Milliseconds a fetched key set is used before it is fetched again. Default 600000. */
  cacheMaxAge?: number
  /** Milliseconds to wait for the key set. Default 5000. */
  timeout?: number
  /** The realm of the WWW-Authenticate challenge. Default "auth", as the service. */
  realm?: string
}

/** Per-route requirements on how the user authenticated (`authenticateWith`). */
export interface StepUpOptions {
  /** Methods (`amr` values: `pwd`, `otp`, `recovery`, `webauthn`) of which the token must carry at least one. */
  requireAmr?: string[]
  /** The longest time since the user last proved a credential (`auth_time`): seconds, or `'30s'`, `'5m'`, `'1h'`. */
  maxAuthAge?: number | string
}

/** `maxAuthAge` in seconds; a TypeError for anything else, at registration of the route. */
export function authAgeSeconds (value: number | string): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value
  const m = typeof value === 'string' ? /^(\d+)\s*(s|m|h)?$/.exec(value.trim()) : null
  if (m === null) throw new TypeError(`verifier: maxAuthAge must be whole seconds or a duration such as '5m', not ${JSON.stringify(value)}`)
  return Number(m[1]) * ({ s: 1, m: 60, h: 3600 }[m[2] as 's' | 'm' | 'h' | undefined ?? 's'])
}

/**
 * Why a verified token does not meet the route's requirements, or null when it does. A token
 * without `auth_time` (issued before the service set it) never meets a `maxAuthAge`.
 */
export function stepUpShortfall (claims: AccessTokenClaims, req: { requireAmr?: string[], maxAuthAge?: number }, nowSeconds: number): string | null {
  if (req.requireAmr !== undefined && req.requireAmr.length > 0 && !req.requireAmr.some((m) => claims.amr?.includes(m) === true)) {
    return `This requires authenticating with one of: ${req.requireAmr.join(', ')}`
  }
  if (req.maxAuthAge !== undefined && (typeof claims.auth_time !== 'number' || nowSeconds - claims.auth_time > req.maxAuthAge)) {
    return `This requires having authenticated within the last ${req.maxAuthAge} seconds`
  }
  return null
}

/** The claims of an access token (API.md "Access tokens"). */
export interface AccessTokenClaims {
  iss: string
  aud: string
  sub: string
  iat: number
  exp: number
  jti: string
  sid: string
  roles: string[]
  /** How the user authenticated (RFC 8176 names: `pwd`, `otp`, `recovery`, `webauthn`). */
  amr?: string[]
  /** When the user last proved a credential, in seconds since the epoch (login or step-up). */
  auth_time?: number
  /** Present when the account has an e-mail address: whether its owner confirmed it. */
  email_verified?: boolean
}

/**
 * The `authenticate` hook. The same signature is declared by the service's own plugin, so the
 * two can be type-checked together.
 */
export type Authenticate = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>

declare module 'fastify' {
  interface FastifyInstance {
    authenticate: Authenticate
    /** `authenticate` plus per-route step-up requirements (RFC 9470); see StepUpOptions. */
    authenticateWith: (options: StepUpOptions) => Authenticate
  }
  interface FastifyRequest {
    user: AccessTokenClaims
  }
}

export type VerifyResult =
  | { ok: true, claims: AccessTokenClaims, kid: string }
  | { ok: false, code: 'ACCESS_TOKEN_INVALID' | 'ACCESS_TOKEN_EXPIRED' | 'JWKS_UNAVAILABLE', reason: string }

/** Header parameters that name a key by other means than our kid; the service never sets them. */
const FOREIGN_KEY_HEADERS = ['jku', 'x5u', 'jwk', 'x5c', 'x5t', 'x5t#S256'] as const
const REQUIRED_CLAIMS = ['iss', 'aud', 'sub', 'iat', 'exp', 'jti', 'sid']
const BEARER = /^Bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+) *$/i

/** The key set could not be fetched and no earlier copy exists. */
class JwksUnavailable extends Error {}

/** Errors of the key set itself (as opposed to its transport). */
const KEY_SELECTION_ERRORS = [errors.JWKSNoMatchingKey, errors.JWKSMultipleMatchingKeys, errors.JOSENotSupported, errors.JOSEAlgNotAllowed, errors.JWKInvalid]

function normalise (options: VerifierOptions) {
  if (typeof options?.issuer !== 'string' || options.issuer === '') throw new TypeError('verifier: `issuer` is required')
  if (typeof options.audience !== 'string' || options.audience === '') throw new TypeError('verifier: `audience` is required')
  const jwksUrl = new URL(options.jwksUrl ?? `${options.issuer.replace(/\/+$/, '')}/.well-known/jwks.json`)
  if (jwksUrl.protocol !== 'https:' && jwksUrl.protocol !== 'http:') throw new TypeError(`verifier: jwksUrl ${jwksUrl.href} must be an http(s) URL`)
  const algorithms = options.algorithms ?? [...VERIFIER_ALGORITHMS]
  if (algorithms.length === 0 || algorithms.some((a) => !VERIFIER_ALGORITHMS.includes(a))) {
    throw new TypeError(`verifier: algorithms must be a non-empty subset of ${VERIFIER_ALGORITHMS.join(', ')} (HS256 and none are never accepted)`)
  }
  const durations = { clockTolerance: options.clockTolerance ?? 5, cooldown: options.cooldown ?? 30_000, cacheMaxAge: options.cacheMaxAge ?? 600_000, timeout: options.timeout ?? 5000 }
  for (const [name, value] of Object.entries(durations)) {
    if (!Number.isInteger(value) || value < 0) throw new TypeError(`verifier: ${name} must be a non-negative integer`)
  }
  return { issuer: options.issuer, audience: options.audience, jwksUrl, algorithms, realm: options.realm ?? 'auth', ...durations }
}

/**
 * The verification itself, without HTTP: `verify(token)` returns a value, never throws. The
 * plugin below maps it to the service's responses; other transports (a queue consumer, a
 * WebSocket upgrade) can use it directly.
 */
export function createAccessTokenVerifier (options: VerifierOptions) {
  const o = normalise(options)
  const remote = createRemoteJWKSet(o.jwksUrl, { cacheMaxAge: o.cacheMaxAge, cooldownDuration: o.cooldown, timeoutDuration: o.timeout })
  let stale: { jwks: JSONWebKeySet, keys: ReturnType<typeof createLocalJWKSet> } | undefined

  async function getKey (header: JWTHeaderParameters, token: FlattenedJWSInput) {
    // Refused before any key is looked up: such a token did not come from the service.
    if (FOREIGN_KEY_HEADERS.some((h) => h in header)) throw new errors.JWSInvalid('the token names its key by a header this service never sets')
    if (typeof header.kid !== 'string' || header.kid === '') throw new errors.JWSInvalid('the token has no kid')
    // jose (like WebCrypto) accepts both (r, s) and (r, n − s); the service signs only the low S.
    if (header.alg === 'ES256' && !es256HasLowS(Buffer.from(token.signature, 'base64url'))) throw new errors.JWSSignatureVerificationFailed()
    try {
      return await remote(header, token)
    } catch (err) {
      if (KEY_SELECTION_ERRORS.some((E) => err instanceof E)) throw err
      // The service is unreachable or answered badly: keep verifying with the last key set.
      const last = remote.jwks()
      if (last === undefined) throw new JwksUnavailable((err as Error).message, { cause: err })
      if (stale?.jwks !== last) stale = { jwks: last, keys: createLocalJWKSet(last) }
      return await stale.keys(header, token)
    }
  }

  async function verify (token: string): Promise<VerifyResult> {
    try {
      const { payload, protectedHeader } = await jwtVerify(token, getKey, {
        issuer: o.issuer,
        audience: o.audience,
        algorithms: o.algorithms,
        typ: 'at+jwt',
        clockTolerance: o.clockTolerance,
        requiredClaims: REQUIRED_CLAIMS
      })
      return { ok: true, claims: payload as unknown as AccessTokenClaims, kid: protectedHeader.kid! }
    } catch (err) {
      if (err instanceof errors.JWTExpired) return { ok: false, code: 'ACCESS_TOKEN_EXPIRED', reason: err.message }
      if (err instanceof JwksUnavailable) return { ok: false, code: 'JWKS_UNAVAILABLE', reason: err.message }
      return { ok: false, code: 'ACCESS_TOKEN_INVALID', reason: (err as Error).message }
    }
  }

  return { verify, options: o, jwks: remote }
}

const verifierPlugin: FastifyPluginAsync<VerifierOptions> = async (app, options) => {
  const verifier = createAccessTokenVerifier(options)
  const { realm } = verifier.options

  // The hook answers by itself rather than throwing: the consuming app's error handler is not
  // ours, and the response must be the service's exactly.
  const deny = (reply: FastifyReply, error: { statusCode?: number, code: string, message: string }): FastifyReply => {
    const statusCode = error.statusCode ?? 401
    const challenge = bearerChallenge(error.code, realm)
    if (challenge !== undefined) reply.header('www-authenticate', challenge)
    if (statusCode === 503) reply.header('retry-after', 5)
    return reply.code(statusCode).type('application/json; charset=utf-8').send({ statusCode, code: error.code, message: error.message })
  }

  if (!app.hasRequestDecorator('user')) app.decorateRequest('user', null as unknown as AccessTokenClaims)

  const authenticate = async function authenticate (request: FastifyRequest, reply: FastifyReply) {
    const authorization = request.headers.authorization
    if (authorization === undefined || authorization === '') return deny(reply, new AuthorizationRequired())
    const match = BEARER.exec(authorization)
    if (match === null) return deny(reply, new AccessTokenInvalid())
    const result = await verifier.verify(match[1]!)
    if (result.ok) {
      request.user = result.claims
      return undefined
    }
    if (result.code === 'JWKS_UNAVAILABLE') {
      request.log.error({ reason: result.reason, jwksUrl: verifier.options.jwksUrl.href }, 'access token not verifiable: key set unavailable')
      return deny(reply, new ServiceUnavailable('The access token cannot be verified right now; retry later'))
    }
    request.log.info({ code: result.code, reason: result.reason }, 'access token refused')
    return deny(reply, result.code === 'ACCESS_TOKEN_EXPIRED' ? new AccessTokenExpired() : new AccessTokenInvalid())
  } satisfies Authenticate
  app.decorate('authenticate', authenticate)

  app.decorate('authenticateWith', function authenticateWith (options: StepUpOptions): Authenticate {
    if (options.requireAmr !== undefined && (!Array.isArray(options.requireAmr) || options.requireAmr.some((m) => typeof m !== 'string' || !/^[a-z]+$/.test(m)))) {
      throw new TypeError('verifier: requireAmr must be a list of amr values such as [\'otp\', \'webauthn\']')
    }
    const required = { requireAmr: options.requireAmr, maxAuthAge: options.maxAuthAge === undefined ? undefined : authAgeSeconds(options.maxAuthAge) }
    return async function authenticateStepUp (request: FastifyRequest, reply: FastifyReply) {
      await authenticate(request, reply)
      if (reply.sent) return undefined
      const shortfall = stepUpShortfall(request.user, required, Math.floor(Date.now() / 1000))
      if (shortfall === null) return undefined
      request.log.info({ requireAmr: required.requireAmr, maxAuthAge: required.maxAuthAge }, 'step-up required')
      reply.header('www-authenticate', stepUpChallenge(realm, shortfall, required))
      const error = new InsufficientUserAuthentication(shortfall)
      return reply.code(401).type('application/json; charset=utf-8').send({ statusCode: 401, code: error.code, message: error.message })
    }
  })
}

export default fp(verifierPlugin, { name: 'auth-service-verifier', fastify: '5.x' })
export { verifierPlugin as verifier }
