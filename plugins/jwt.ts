/**
 * Access tokens: the key ring, @fastify/jwt set up to sign with the ring's current key and to
 * verify strictly, and the one `authenticate` hook every Bearer route uses.
 *
 * Verification never trusts the token's header to choose how it is checked: the `kid` must
 * name a key of the ring, the header's `alg` must be that key's algorithm, headers that point
 * at other keys (`jku`, `x5u`, `jwk`, `x5c`) or demand extensions (`crit`) are refused, and
 * issuer, audience, `typ: at+jwt` and the required claims are pinned. fast-jwt's verify cache
 * stays off; after the signature the session (`sid`) is checked in the database on every
 * request, so a logout takes effect on this service at once.
 * @see https://github.com/fastify/fastify-jwt
 */
import { randomUUID } from 'node:crypto'
import fastifyJwt from '@fastify/jwt'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { decodeKeyEncryptionKey } from '../src/config.js'
import { AccessTokenExpired, AccessTokenInvalid, AuthorizationRequired, SessionEnded } from '../src/errors.js'
import { createKeyRing, type KeyRing } from '../src/keys/key-ring.js'

export interface AccessClaims {
  iss: string
  aud: string
  sub: string
  iat: number
  exp: number
  jti: string
  sid: string
  roles: string[]
}

export interface Principal {
  userId: string
  username: string
  sessionId: string
  roles: string[]
  claims: AccessClaims
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: AccessClaims
    user: AccessClaims
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    keyRing: KeyRing
    authenticate: (request: FastifyRequest) => Promise<void>
    issueAccessToken: (subject: { userId: string, sessionId: string, roles: string[] }, now: Date) => { accessToken: string, expiresIn: number }
  }
  interface FastifyRequest {
    principal: Principal | null
  }
}

const FOREIGN_KEY_HEADERS = ['jku', 'x5u', 'jwk', 'x5c', 'x5t', 'x5t#S256', 'crit'] as const
const BEARER = /^Bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*) *$/i

export default fp(async function jwtPlugin (app) {
  const { config } = app
  const ring = createKeyRing(app.repos.signingKeys, {
    algorithm: config.jwt.algorithm,
    secret: config.jwt.secret,
    encryptionKey: config.keys.encryptionKey === undefined ? undefined : decodeKeyEncryptionKey(config.keys.encryptionKey),
    rotationIntervalSeconds: config.keys.rotationInterval,
    jwksMaxAgeSeconds: config.keys.jwksMaxAge,
    accessTokenTtlSeconds: config.jwt.accessTokenTtl,
    clockToleranceSeconds: config.jwt.clockToleranceSeconds,
    checkIntervalSeconds: config.keys.checkInterval,
    rsaModulusLength: config.keys.rsaModulusLength
  })
  await ring.maintain(new Date())
  app.decorate('keyRing', ring)

  const algorithms = ['ES256', 'RS256', 'EdDSA', ...(config.jwt.algorithm === 'HS256' ? ['HS256'] : [])]
  await app.register(fastifyJwt, {
    secret: {
      private: (_request: unknown, _payload: unknown, cb: (err: Error | null, key?: string) => void) => {
        cb(null, ring.signingKey(new Date()).signKey)
      },
      public: (_request: unknown, decoded: { header: Record<string, unknown> }, cb: (err: Error | null, key?: string) => void) => {
        const { header } = decoded
        if (FOREIGN_KEY_HEADERS.some((h) => header[h] !== undefined)) return cb(new AccessTokenInvalid())
        const key = typeof header.kid === 'string' ? ring.verificationKey(header.kid) : undefined
        if (key === undefined || key.alg !== header.alg) return cb(new AccessTokenInvalid())
        cb(null, key.verifyKey)
      }
    },
    decode: { complete: true },
    verify: {
      algorithms,
      allowedIss: config.jwt.issuer,
      allowedAud: config.jwt.audience,
      checkTyp: 'at+jwt',
      requiredClaims: ['iss', 'aud', 'sub', 'iat', 'exp', 'jti', 'sid'],
      clockTolerance: config.jwt.clockToleranceSeconds * 1000,
      cache: false
    }
  } as Parameters<typeof fastifyJwt>[1])

  app.decorateRequest('principal', null)

  app.decorate('issueAccessToken', (subject: { userId: string, sessionId: string, roles: string[] }, now: Date) => {
    const key = ring.signingKey(now)
    const ttl = config.jwt.accessTokenTtl
    // Optional jitter: tokens of clients that logged in together do not all expire together.
    const expiresIn = ttl - Math.floor(Math.random() * config.jwt.accessTokenJitter * ttl)
    const claims = {
      iss: config.jwt.issuer,
      aud: config.jwt.audience,
      sub: subject.userId,
      jti: randomUUID(),
      sid: subject.sessionId,
      roles: subject.roles
    }
    // iat = now, exp = iat + expiresIn (seconds), set by the signer.
    const accessToken = app.jwt.sign(claims as AccessClaims, {
      key: key.signKey, algorithm: key.alg, kid: key.kid, typ: 'at+jwt', expiresIn, clockTimestamp: now.getTime()
    } as never)
    return { accessToken, expiresIn }
  })

  app.decorate('authenticate', async function authenticate (request: FastifyRequest) {
    const authorization = request.headers.authorization
    if (authorization === undefined || authorization === '') throw new AuthorizationRequired()
    if (!BEARER.test(authorization)) throw new AccessTokenInvalid()
    let claims: AccessClaims
    try {
      claims = await request.jwtVerify<AccessClaims>()
    } catch (err) {
      throw (err as { code?: string }).code === 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED' ? new AccessTokenExpired() : new AccessTokenInvalid()
    }
    if (typeof claims.sid !== 'string' || typeof claims.sub !== 'string') throw new AccessTokenInvalid()
    const live = await app.repos.sessions.findLive(claims.sid, new Date())
    if (live === null || live.user.id !== claims.sub || live.user.disabled) throw new SessionEnded()
    request.principal = {
      userId: live.user.id,
      username: live.user.username,
      sessionId: claims.sid,
      roles: live.user.roles,
      claims
    }
  })

  const timer = setInterval(() => {
    ring.maintain(new Date()).then((events) => {
      for (const e of events) app.log.info({ kid: e.kid, alg: e.alg }, `signing key ${e.type}`)
    }, (err: unknown) => { app.log.error({ err }, 'key ring maintenance failed') })
  }, config.keys.checkInterval * 1000)
  timer.unref()
  app.addHook('onClose', async () => { clearInterval(timer) })
}, { name: 'jwt', fastify: '5.x', dependencies: ['db'] })
