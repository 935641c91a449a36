/**
 * Baseline: the HTTP ceiling. A Fastify hello-world route with a response schema, no logger,
 * no plugins: what any Fastify route on this machine can answer at most.
 */
import Fastify from 'fastify'

const app = Fastify({ logger: false })
app.get('/', {
  schema: { response: { 200: { type: 'object', properties: { hello: { type: 'string' } } } } }
}, async () => ({ hello: 'world' }))
app.get('/ready', async () => ({ status: 'ok' }))

process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) })
