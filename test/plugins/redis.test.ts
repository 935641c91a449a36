/**
 * The redis plugin alone on a bare Fastify: the start-time warning for PostgreSQL without
 * Redis, a start refused (naming REDIS_URL) when Redis cannot be reached, and a client that
 * answers and closes with the app.
 */
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import t from 'tap'
import redisPlugin from '../../plugins/redis.js'
import type { Env } from '../../src/config.js'
import { testConfig } from '../support/app.js'
import { redisServer } from '../support/redis.js'
import { freePort } from '../support/server.js'

async function bare (env: Env): Promise<{ app: FastifyInstance, logs: () => Array<{ level: number, msg: string }> }> {
  const chunks: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _enc, cb) { chunks.push(chunk.toString()); cb() } })
  const app = Fastify({ logger: { level: 'info', stream } })
  // The config object as loadConfig builds it; DATABASE_URL is only read here, never opened.
  const config = testConfig(env)
  await app.register(fp(async (i) => { i.decorate('config', config) }, { name: 'config' }))
  await app.register(redisPlugin)
  await app.ready()
  return { app, logs: () => chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l)) }
}

t.test('on PostgreSQL without REDIS_URL: one warning at start, saying several instances would each count alone', async (t) => {
  const { app, logs } = await bare({ DATABASE_URL: 'postgres://auth@127.0.0.1:1/auth' })
  t.teardown(() => app.close())
  t.equal(app.redis, null, 'no Redis: counts stay in memory')
  const warnings = logs().filter((l) => l.level === 40)
  t.equal(warnings.length, 1)
  t.match(warnings[0]?.msg, /REDIS_URL is unset: several instances would each count alone/)
})

t.test('on SQLite without REDIS_URL: no warning, no Redis (as today)', async (t) => {
  const { app, logs } = await bare({})
  t.teardown(() => app.close())
  t.equal(app.redis, null)
  t.same(logs().filter((l) => l.level >= 40), [])
})

t.test('with REDIS_URL: connected at start, no warning even on PostgreSQL, closed with the app', async (t) => {
  const server = await redisServer(t)
  if (server === null) return
  const { app, logs } = await bare({ REDIS_URL: server.url, DATABASE_URL: 'postgres://auth@127.0.0.1:1/auth' })
  t.equal(await app.redis!.ping(), 'PONG')
  t.same(logs().filter((l) => l.level >= 40), [])
  await app.close()
  await t.rejects(app.redis!.ping(), 'the connection ends with the app')
})

t.test('a REDIS_URL where nothing answers stops the start with one line naming REDIS_URL (and no password)', async (t) => {
  const port = await freePort()
  await t.rejects(bare({ REDIS_URL: `redis://user:hunter2hunter2@127.0.0.1:${port}` }), {
    message: new RegExp(`^REDIS_URL: cannot reach Redis at redis://127\\.0\\.0\\.1:${port} \\(`)
  })
  await t.rejects(bare({ REDIS_URL: `redis://user:hunter2hunter2@127.0.0.1:${port}` }), { message: /^(?![\s\S]*hunter2)/ })
})
