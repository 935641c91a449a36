/**
 * The domain services the routes use: password hashing and rules, the session manager that
 * implements the refresh-token rules, and the per-username failed-login counter (in Redis
 * with REDIS_URL, shared by every instance).
 */
import fp from 'fastify-plugin'
import { createPasswordPolicy, type PasswordPolicy } from '../src/auth/credentials.js'
import { createLoginThrottle, type LoginThrottle } from '../src/auth/login-throttle.js'
import { createRedisLoginThrottle } from '../src/auth/redis-login-throttle.js'
import { createPasswordHasher, hashConcurrency, type PasswordHasher } from '../src/auth/passwords.js'
import { createMfa, type Mfa } from '../src/auth/mfa.js'
import { createRecoveryCodes } from '../src/auth/recovery-codes.js'
import { createSessionManager, type SessionManager } from '../src/auth/session-manager.js'
import { createTotp } from '../src/auth/totp.js'
import { decodeKeyEncryptionKey } from '../src/config.js'
import { loadServerSecret } from '../src/keys/server-secret.js'
import { everyInterval } from '../src/redis.js'
import { passkeyFactorOf } from '../src/auth/passkey-factor.js'

declare module 'fastify' {
  interface FastifyInstance {
    passwords: PasswordHasher
    passwordPolicy: PasswordPolicy
    sessionManager: SessionManager
    loginThrottle: LoginThrottle
    mfa: Mfa
  }
}

export default fp(async function authPlugin (app) {
  const { config, repos } = app
  app.decorate('passwords', await createPasswordHasher(config.password, hashConcurrency(config.threadPoolSize)))
  app.decorate('passwordPolicy', createPasswordPolicy(config.password.minLength))
  // Sealed under KEY_ENCRYPTION_KEY when it is set (src/keys/server-secret.ts).
  const encryptionKey = config.keys.encryptionKey === undefined ? undefined : decodeKeyEncryptionKey(config.keys.encryptionKey)
  const derivationKey = await loadServerSecret(repos.serverSecrets, 'refresh-token-derivation', encryptionKey)
  app.decorate('sessionManager', createSessionManager(repos.sessions, derivationKey, {
    refreshTtlSeconds: config.refresh.ttl,
    sessionMaxAgeSeconds: config.refresh.sessionMaxAge,
    reuseIntervalSeconds: config.refresh.reuseInterval
  }))
  // TOTP secrets sealed under KEY_ENCRYPTION_KEY (production offers no TOTP without it);
  // recovery codes keyed by their own server secret.
  const totp = createTotp(encryptionKey, new URL(config.publicOrigin).hostname, { requireKey: config.env === 'production' })
  if (!totp.available) app.log.warn('KEY_ENCRYPTION_KEY is not set: TOTP enrolment answers 503 TOTP_UNAVAILABLE, because a TOTP secret would be stored in clear')
  app.decorate('mfa', createMfa({
    repo: repos.mfa,
    totp,
    recoveryCodes: createRecoveryCodes(await loadServerSecret(repos.serverSecrets, 'recovery-code-key', encryptionKey)),
    requiredRoles: config.mfaRequiredRoles,
    passkeys: passkeyFactorOf(app.passkeys)
  }))
  // With REDIS_URL every instance counts one account's guesses together; without it, this
  // instance alone (as a single instance should).
  const logThrottleError = everyInterval<unknown>(10_000, (err, suppressed) => {
    app.log.warn({ error: (err as Error).message, suppressed }, 'login throttle unavailable: logins answer 503 THROTTLE_UNAVAILABLE until Redis answers')
  })
  app.decorate('loginThrottle', app.redis === null
    ? createLoginThrottle(config.rateLimit.loginFailuresPerUser)
    : createRedisLoginThrottle(app.redis, config.rateLimit.loginFailuresPerUser, logThrottleError))
}, { name: 'auth', fastify: '5.x', dependencies: ['db', 'redis', 'passkeys'] })
