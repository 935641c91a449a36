/**
 * A service that consumes the auth service's tokens: a bare Fastify app with the verifier
 * plugin (packages/verifier, as built into its dist/) and one protected route. It fetches the JWK Set
 * from the running auth service once, then verifies every token offline.
 */
import Fastify from 'fastify'

const issuer = process.env.ISSUER!
const jwksUrl = process.env.JWKS_URL!

// The built plugin, as a consuming app installs it (the package @auth-service/verifier).
const { default: verifier } = await import(new URL('../../packages/verifier/dist/index.js', import.meta.url).href) as typeof import('../../packages/verifier/src/index.js')

const app = Fastify({ logger: false })
await app.register(verifier, { issuer, audience: issuer, jwksUrl })
app.get('/ready', async () => ({ status: 'ok' }))
app.get('/orders', {
  preValidation: app.authenticate,
  schema: { response: { 200: { type: 'object', properties: { owner: { type: 'string' }, orders: { type: 'array', items: { type: 'string' } } } } } }
}, async (request) => ({ owner: request.user.sub, orders: [] }))

process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) })
