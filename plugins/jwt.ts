/**
 * Access tokens: the key ring, @fastify/jwt set up to sign with the ring's current key and to
 * verify strictly, and the one `authenticate` hook every Bearer route uses. `authenticate`
 * checks tokens with src/keys/token-verifier.ts (the same rules, with keys imported once and
 * the signature checked on the thread pool), not with @fastify/jwt's verify, which cost a
 * third more per token.
 *
 * Verification never trusts the token's header to choose how it is checked: the `kid` must
 * name a key of the ring, the header's `alg` must be that key's algorithm, headers that point
 * at other keys (`jku`, `x5u`, `jwk`, `x5c`) or demand extensions (`crit`) are refused, and
 * issuer, audience, `typ: at+jwt` and the required claims are pinned. No verification is
 * cached (fast-jwt's cache stays off too): after the signature the session (`sid`) is checked
 * in the database on every request, so a logout takes effect on this service at once.
 *
 * The ring is brought up to date at boot and every KEY_CHECK_INTERVAL (rotation on schedule,
 * retirement, removal), and reread within a second of any change another instance or the key
 * CLI stores (a rotation, a revocation).
 * @see https://github.com/fastify/fastify-jwt
 */
import { randomUUID } from 'node:crypto'
import fastifyJwt from '@fastify/jwt'
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AccessTokenExpired, AccessTokenInvalid, AuthorizationRequired, ServiceUnavailable, SessionEnded } from '../src/errors.js'
import { createKeyRing, KEY_CHANGE_CHECK_SECONDS, keyRingOptions, type KeyRing, type RingEvent, type RingKey } from '../src/keys/key-ring.js'
import type { Algorithm } from '../src/keys/signing-key.js'
import { createTokenSigner } from '../src/keys/token-signer.js'
import { createTokenVerifier, FOREIGN_KEY_HEADERS, TokenRejected } from '../src/keys/token-verifier.js'
import type { AccessTokenClaims, Authenticate } from '../packages/verifier/src/index.js'

/** The claims this service signs; the verifier plugin exposes the same type to other services. */
export type AccessClaims = AccessTokenClaims

export interface Principal {
  userId: string
  username: string
  sessionId: string
  roles: string[]
  /** When the account was created; read with the session, so /me needs no second query. */
  createdAt: Date
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
    authenticate: Authenticate
    issueAccessToken: (subject: AccessSubject, now: Date) => Promise<{ accessToken: string, expiresIn: number }>
    /**
     * The signer of access tokens at `now`, with its key chosen now: throws a 503 (and so lets
     * a route refuse before it writes anything) when no key can sign.
     */
    accessTokenIssuer: (now: Date) => (subject: AccessSubject) => Promise<{ accessToken: string, expiresIn: number }>
  }
  interface FastifyRequest {
    principal: Principal | null
  }
}

export interface AccessSubject { userId: string, sessionId: string, roles: string[] }

const BEARER = /^Bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*) *$/i

/** One log line per change of the ring; kids are public, key material never appears. */
export function logRingEvents (log: FastifyBaseLogger, events: RingEvent[]): void {
  for (const e of events) {
    log.info({ kid: e.kid, alg: e.alg, ...(e.activatesAt === undefined ? {} : { activatesAt: e.activatesAt.toISOString() }) }, `signing key ${e.type}`)
  }
}

export default fp(async function jwtPlugin (app) {
  const { config } = app
  const ring = createKeyRing(app.repos.signingKeys, keyRingOptions(config))
  /** Logs the ring's changes and records them in the audit log (the CLI records its own). */
  const report = (events: RingEvent[], now: Date): void => {
    logRingEvents(app.log, events)
    for (const e of events) {
      if (e.type === 'removed') continue
      app.repos.audit.record({
        type: 'key_rotated', at: now, userId: null, sessionId: null, ip: null, userAgent: null, requestId: null,
        detail: { event: e.type, kid: e.kid, alg: e.alg, by: 'schedule' }
      }).catch((err: unknown) => { app.log.error({ err }, 'audit event could not be recorded') })
    }
  }
  // A wrong or missing KEY_ENCRYPTION_KEY stops the boot here, with a message naming the setting.
  const bootTime = new Date()
  report(await ring.maintain(bootTime), bootTime)
  if (config.keys.encryptionKey === undefined && config.jwt.algorithm !== 'HS256' && config.env === 'production') {
    app.log.warn('KEY_ENCRYPTION_KEY is not set: private signing keys are stored as plain PEM in the database; anyone who can read the database file or a backup can sign access tokens')
  }
  app.decorate('keyRing', ring)

  const algorithms = ['ES256', 'RS256', 'EdDSA', ...(config.jwt.algorithm === 'HS256' ? ['HS256'] : [])]
  await app.register(fastifyJwt, {
    secret: {
      private: (_request: unknown, _payload: unknown, cb: (err: Error | null, key?: string) => void) => {
        cb(null, ring.signingKey(new Date()).signKey)
      },
      public: async (_request: unknown, decoded: { header: Record<string, unknown> }): Promise<string> => {
        const { header } = decoded
        if (FOREIGN_KEY_HEADERS.some((h) => header[h] !== undefined)) throw new AccessTokenInvalid()
        const key = typeof header.kid === 'string' ? await ring.findVerificationKey(header.kid) : undefined
        // The key decides the algorithm, never the token: this is what stops `none` and
        // HS256-signed-with-the-public-key.
        if (key === undefined || key.alg !== header.alg) throw new AccessTokenInvalid()
        return key.verifyKey
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

  // What `authenticate` verifies with: the same rules as the @fastify/jwt registration above
  // (which stays, with them, for `request.jwtVerify`), at a fraction of its cost per token; see
  // src/keys/token-verifier.ts. Known kids are answered without a promise.
  const verifyAccessToken = createTokenVerifier(
    { issuer: config.jwt.issuer, audience: config.jwt.audience, clockToleranceSeconds: config.jwt.clockToleranceSeconds, algorithms: algorithms as Algorithm[] },
    (kid) => ring.verificationKey(kid) ?? ring.findVerificationKey(kid)
  )

  // One signer per ring key (src/keys/token-signer.ts: the signature on the thread pool), made at
  // the key's first token. Keyed by the ring's key object, so a reloaded ring gets fresh signers
  // and old ones go.
  const signers = new WeakMap<RingKey, (payload: Record<string, unknown>) => Promise<string>>()
  const signerOf = (key: RingKey): (payload: Record<string, unknown>) => Promise<string> => {
    let signer = signers.get(key)
    if (signer === undefined) {
      signer = createTokenSigner(key)
      signers.set(key, signer)
    }
    return signer
  }

  const accessTokenIssuer = (now: Date) => {
    const key = ring.findSigningKey(now)
    if (key === undefined) {
      app.log.error('no signing key: access tokens cannot be issued (is the signing_keys table empty?)')
      throw Object.assign(new ServiceUnavailable('No key can sign access tokens right now; retry later'), { retryAfter: 5 })
    }
    return async (subject: AccessSubject) => await signAccessToken(key, subject, now)
  }
  app.decorate('accessTokenIssuer', accessTokenIssuer)
  app.decorate('issueAccessToken', async (subject: AccessSubject, now: Date) => await accessTokenIssuer(now)(subject))

  async function signAccessToken (key: RingKey, subject: AccessSubject, now: Date): Promise<{ accessToken: string, expiresIn: number }> {
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
    const iat = Math.floor(now.getTime() / 1000)
    const accessToken = await signerOf(key)({ ...claims, iat, exp: iat + expiresIn })
    return { accessToken, expiresIn }
  }

  /**
   * The one Bearer check. Routes use it as a `preValidation` hook, not `onRequest`: the rate
   * limiter runs in onRequest after a route's own onRequest hooks, so an onRequest check would
   * refuse floods of bad tokens before the limiter ever counted them.
   */
  app.decorate('authenticate', async function authenticate (request: FastifyRequest): Promise<void> {
    const authorization = request.headers.authorization
    if (authorization === undefined || authorization === '') throw new AuthorizationRequired()
    const bearer = BEARER.exec(authorization)
    if (bearer === null) throw new AccessTokenInvalid()
    let claims: AccessClaims
    try {
      claims = await verifyAccessToken(bearer[1]!)
    } catch (err) {
      throw err instanceof TokenRejected && err.reason === 'expired' ? new AccessTokenExpired() : new AccessTokenInvalid()
    }
    const live = await app.repos.sessions.findLive(claims.sid, new Date())
    if (live === null || live.user.id !== claims.sub || live.user.disabled) throw new SessionEnded()
    request.principal = {
      userId: live.user.id,
      username: live.user.username,
      sessionId: claims.sid,
      roles: live.user.roles,
      createdAt: live.user.createdAt,
      claims
    }
  })

  const timer = setInterval(() => {
    const now = new Date()
    ring.maintain(now).then((events) => { report(events, now) },
      (err: unknown) => { app.log.error({ err }, 'key ring maintenance failed') })
  }, config.keys.checkInterval * 1000)
  timer.unref()
  // Between checks, a key rotated or revoked by the key CLI or another instance is picked up
  // within KEY_CHANGE_CHECK_SECONDS: one small read of the signing_keys table, a reload only
  // when it changed. A revoked key so stops signing and verifying everywhere within a second.
  let changeCheckFailed = false
  let checking = false
  const changeTimer = setInterval(() => {
    // One check at a time: a slow database (or a long key generation queued before it) never
    // piles checks up behind it.
    if (checking) return
    checking = true
    ring.refresh().finally(() => { checking = false }).then((reloaded) => {
      changeCheckFailed = false
      if (reloaded) app.log.info({ kids: ring.keys.map((k) => k.kid) }, 'signing keys changed in the database; reloaded')
    }, (err: unknown) => {
      // Logged once per outage, not every second.
      if (!changeCheckFailed) app.log.error({ err }, 'signing key change check failed')
      changeCheckFailed = true
    })
  }, KEY_CHANGE_CHECK_SECONDS * 1000)
  changeTimer.unref()
  app.addHook('onClose', async () => { clearInterval(timer); clearInterval(changeTimer) })
}, { name: 'jwt', fastify: '5.x', dependencies: ['db'] })
