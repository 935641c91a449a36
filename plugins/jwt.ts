/**
 * Access tokens wired into the app: the key ring (kept up to date by src/keys/ring-maintenance.ts),
 * @fastify/jwt registered with the verification rules of src/keys/access-tokens.ts, and the
 * issuer the routes sign with. The Bearer check is plugins/authenticate.ts.
 */
import fastifyJwt from '@fastify/jwt'
import fp from 'fastify-plugin'
import { ServiceUnavailable } from '../src/errors.js'
import { accessTokenJwtOptions, createAccessTokenIssuer, type AccessClaims, type AccessSubject, type IssuedAccessToken } from '../src/keys/access-tokens.js'
import { createKeyRing, keyRingOptions, type KeyRing } from '../src/keys/key-ring.js'
import { startRingMaintenance } from '../src/keys/ring-maintenance.js'

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: AccessClaims
    user: AccessClaims
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    keyRing: KeyRing
    issueAccessToken: (subject: AccessSubject, now: Date) => Promise<IssuedAccessToken>
    /**
     * The signer of access tokens at `now`, with its key chosen now: throws a 503 (and so lets
     * a route refuse before it writes anything) when no key can sign.
     */
    accessTokenIssuer: (now: Date) => (subject: AccessSubject) => Promise<IssuedAccessToken>
  }
}

export default fp(async function jwtPlugin (app) {
  const { config } = app
  const ring = createKeyRing(app.repos.signingKeys, keyRingOptions(config))
  const stop = await startRingMaintenance(ring, { log: app.log, audit: app.repos.audit, checkIntervalSeconds: config.keys.checkInterval })
  app.addHook('onClose', async () => { stop() })
  if (config.keys.encryptionKey === undefined && config.jwt.algorithm !== 'HS256' && config.env === 'production') {
    app.log.warn('KEY_ENCRYPTION_KEY is not set: private signing keys are stored as plain PEM in the database; anyone who can read the database file or a backup can sign access tokens')
  }
  app.decorate('keyRing', ring)

  await app.register(fastifyJwt, accessTokenJwtOptions(config, ring))

  const issue = createAccessTokenIssuer(config)
  const accessTokenIssuer = (now: Date) => {
    const key = ring.findSigningKey(now)
    if (key === undefined) {
      app.log.error('no signing key: access tokens cannot be issued (is the signing_keys table empty?)')
      throw Object.assign(new ServiceUnavailable('No key can sign access tokens right now; retry later'), { retryAfter: 5 })
    }
    return async (subject: AccessSubject) => issue(key, subject, now)
  }
  app.decorate('accessTokenIssuer', accessTokenIssuer)
  app.decorate('issueAccessToken', async (subject: AccessSubject, now: Date) => await accessTokenIssuer(now)(subject))
}, { name: 'jwt', fastify: '5.x', dependencies: ['db'] })
