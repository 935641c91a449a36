/**
 * The domain services the routes use: password hashing and rules, the session manager that
 * implements the refresh-token rules, and the per-username failed-login counter.
 */
import fp from 'fastify-plugin'
import { createPasswordPolicy, type PasswordPolicy } from '../src/auth/credentials.js'
import { createLoginThrottle, type LoginThrottle } from '../src/auth/login-throttle.js'
import { createPasswordHasher, hashConcurrency, type PasswordHasher } from '../src/auth/passwords.js'
import { createSessionManager, type SessionManager } from '../src/auth/session-manager.js'
import { decodeKeyEncryptionKey } from '../src/config.js'
import { loadServerSecret } from '../src/keys/server-secret.js'

declare module 'fastify' {
  interface FastifyInstance {
    passwords: PasswordHasher
    passwordPolicy: PasswordPolicy
    sessionManager: SessionManager
    loginThrottle: LoginThrottle
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
  app.decorate('loginThrottle', createLoginThrottle(config.rateLimit.loginFailuresPerUser))
}, { name: 'auth', fastify: '5.x', dependencies: ['db'] })
