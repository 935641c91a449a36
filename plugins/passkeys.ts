/**
 * The passkey service (src/auth/passkeys.ts) over the passkeys repository, with the relying
 * party taken from PUBLIC_URL and CORS_ORIGINS. Decorated so that every flow that checks a
 * passkey (sign-in, the second factor, step-up) uses the one instance.
 */
import fp from 'fastify-plugin'
import { createPasskeyService, relyingParty, type PasskeyService } from '../src/auth/passkeys.js'

declare module 'fastify' {
  interface FastifyInstance {
    passkeys: PasskeyService
  }
}

export default fp(async function passkeysPlugin (app) {
  app.decorate('passkeys', createPasskeyService(app.repos.passkeys, relyingParty(app.config)))
}, { name: 'passkeys', dependencies: ['db'] })
