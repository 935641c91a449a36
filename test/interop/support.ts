/**
 * A really listening service (127.0.0.1, a free port, closed at teardown) and a second Fastify
 * app, the "consuming service", protected by the verifier plugin.
 */
import type { IncomingMessage } from 'node:http'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import verifier, { type VerifierOptions } from '../../packages/verifier/src/index.js'
import { listen } from '../support/server.js'

export const ISSUER = 'https://auth.test.example'
export const AUDIENCE = 'https://api.test.example'

export interface Service {
  app: FastifyInstance
  origin: string
  jwksUrl: string
  /** How many times the JWKS was fetched over HTTP. */
  jwksFetches: () => number
}

export async function startService (t: Test, env: Record<string, string> = {}): Promise<Service> {
  const { app, base: origin } = await listen(t, { JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE, ...env })
  let fetches = 0
  app.server.on('request', (req: IncomingMessage) => { if (req.url === '/.well-known/jwks.json') fetches++ })
  return { app, origin, jwksUrl: `${origin}/.well-known/jwks.json`, jwksFetches: () => fetches }
}

/** The consuming service: one protected route that echoes the verified claims. */
export async function startConsumer (t: Test, options: Partial<VerifierOptions> & { jwksUrl: string }): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  await app.register(verifier, { issuer: ISSUER, audience: AUDIENCE, ...options })
  app.get('/whoami', { onRequest: app.authenticate }, async (request) => ({ claims: request.user }))
  await app.ready()
  t.teardown(() => app.close())
  return app
}

export async function whoami (consumer: FastifyInstance, token: string) {
  return await consumer.inject({ url: '/whoami', headers: { authorization: `Bearer ${token}` } })
}
