import { Writable } from 'node:stream'
import Fastify, { LogController, type FastifyInstance } from 'fastify'
import t from 'tap'
import { LazyChildLogger, lazyChildLoggerFactory } from '../src/request-logger.js'
import { buildTestApp, PASSWORD, register } from './helper.js'

function capture (): { stream: Writable, lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _enc, cb) { chunks.push(chunk.toString('utf8')); cb() } })
  return { stream, lines: () => chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) }
}

/** A bare Fastify app with a redacting pino logger and the lazy request logger, as src/app.ts sets them. */
async function appWith (stream: Writable): Promise<{ app: FastifyInstance, made: Map<string, boolean> }> {
  const app = Fastify({
    logger: { level: 'info', redact: { paths: ['*.password', 'req.headers.authorization'], censor: '[redacted]' }, stream },
    childLoggerFactory: lazyChildLoggerFactory,
    logController: new LogController({ disableRequestLogging: true })
  })
  const made = new Map<string, boolean>()
  app.addHook('onRequest', async (request, reply) => { reply.header('x-request-id', request.id) })
  app.addHook('onResponse', async (request) => {
    made.set(request.url, request.log instanceof LazyChildLogger && request.log.isMade)
  })
  app.get('/quiet', async () => ({ ok: true }))
  app.get('/talks', async (request) => {
    request.log.info({ body: { password: 'hunter2-hunter2' } }, 'said something')
    request.log.debug('below the level')
    return { ok: true }
  })
  app.get('/verbose', { logLevel: 'debug' }, async (request) => {
    request.log.debug({ step: 1 }, 'debug at this route')
    return { level: request.log.level }
  })
  app.get('/nested', async (request) => {
    request.log.child({ part: 'inner' }).warn('from a grandchild')
    return { ok: true }
  })
  await app.ready()
  t.teardown(() => app.close())
  return { app, made }
}

t.test('request.log: no child logger is made for a request that does not log', async (t) => {
  const log = capture()
  const { app, made } = await appWith(log.stream)
  t.equal((await app.inject('/quiet')).statusCode, 200)
  t.equal(made.get('/quiet'), false, 'never made')
  t.equal((await app.inject('/talks')).statusCode, 200)
  t.equal(made.get('/talks'), true, 'made by the first log call')
  t.same(log.lines().map((l) => l.msg), ['said something'], 'only what was logged, nothing below the level')
})

t.test('request.log: lines carry the request id and go through the redaction', async (t) => {
  const log = capture()
  const { app } = await appWith(log.stream)
  const res = await app.inject('/talks')
  const line = log.lines().find((l) => l.msg === 'said something')!
  t.ok(line, 'the line was written')
  t.equal(line.reqId, res.headers['x-request-id'], 'the request id, as Fastify binds it')
  t.same(line.body, { password: '[redacted]' }, 'redacted')
  t.notOk(JSON.stringify(log.lines()).includes('hunter2'), 'the secret is nowhere')
})

t.test("request.log: a route's logLevel, and child loggers of it", async (t) => {
  const log = capture()
  const { app } = await appWith(log.stream)
  const verbose = await app.inject('/verbose')
  t.same(verbose.json(), { level: 'debug' }, 'the level the route asked for')
  t.match(log.lines().find((l) => l.msg === 'debug at this route'), { level: 20, step: 1, reqId: verbose.headers['x-request-id'] })

  const nested = await app.inject('/nested')
  t.match(log.lines().find((l) => l.msg === 'from a grandchild'), { level: 40, part: 'inner', reqId: nested.headers['x-request-id'] })
})

t.test('request.log: level reads through, and setting it makes the child', async (t) => {
  const log = capture()
  const { app } = await appWith(log.stream)
  const lazy = new LazyChildLogger(app.log, { reqId: 'r-1' }, {})
  t.equal(lazy.level, 'info', "the parent's level while nothing was made")
  t.notOk(lazy.isMade)
  lazy.level = 'warn'
  t.ok(lazy.isMade)
  lazy.info('dropped')
  lazy.warn('kept')
  t.same(log.lines().map((l) => [l.msg, l.reqId]), [['kept', 'r-1']])
  t.equal(app.log.level, 'info', "the parent's level is unchanged")
})

t.test('in the service: the lines handlers write carry the id sent back as x-request-id', async (t) => {
  const log = capture()
  const app = await buildTestApp(t, { LOG_LEVEL: 'info' }, { logStream: log.stream })
  await register(app)
  const failed = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'alice', password: 'not the password' } })
  t.equal(failed.statusCode, 401)
  const ok = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'alice', password: PASSWORD, transport: 'body' } })
  t.equal(ok.statusCode, 200)
  const refused = await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: 'X'.repeat(43) } })
  t.equal(refused.statusCode, 401)
  const lines = log.lines()
  t.equal(lines.find((l) => l.msg === 'login failed')?.reqId, failed.headers['x-request-id'])
  t.equal(lines.find((l) => l.msg === 'login')?.reqId, ok.headers['x-request-id'])
  t.equal(lines.find((l) => l.msg === 'request refused' && l.reqId === refused.headers['x-request-id'])?.statusCode, 401)
})
