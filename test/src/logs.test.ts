import { Writable } from 'node:stream'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { bearer, buildTestApp, cookieOf, PASSWORD, register, SAME_ORIGIN } from '../support/app.js'

const NEW_PASSWORD = 'a completely new passphrase'

function capture (): { stream: Writable, lines: () => Array<Record<string, unknown>>, text: () => string } {
  const chunks: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _enc, cb) { chunks.push(chunk.toString('utf8')); cb() } })
  const text = (): string => chunks.join('')
  return { stream, text, lines: () => text().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) }
}

interface Flow {
  responses: LightMyRequestResponse[]
  secrets: string[]
}

/** register → login (cookie and body) → refresh (cookie and body) → me → password change → logout; everything secret that crossed the wire. */
async function fullFlow (app: FastifyInstance): Promise<Flow> {
  const responses: LightMyRequestResponse[] = []
  const secrets = [PASSWORD, NEW_PASSWORD, 'wrong password typed']
  const send = async (opts: InjectOptions): Promise<LightMyRequestResponse> => {
    const res = await app.inject(opts)
    responses.push(res)
    return res
  }
  await send({ method: 'POST', url: '/api/auth/register', payload: { username: 'alice', password: PASSWORD } })
  await send({ method: 'POST', url: '/api/auth/login', payload: { username: 'alice', password: 'wrong password typed' } })
  const cookieLogin = await send({ method: 'POST', url: '/api/auth/login', headers: SAME_ORIGIN, payload: { username: 'alice', password: PASSWORD } })
  const bodyLogin = await send({ method: 'POST', url: '/api/auth/login', payload: { username: 'alice', password: PASSWORD, transport: 'body' } })
  const cookieToken = cookieOf(cookieLogin)!.value
  secrets.push(cookieLogin.json().accessToken, cookieToken, bodyLogin.json().accessToken, bodyLogin.json().refreshToken)

  const cookieRefresh = await send({ method: 'POST', url: '/api/auth/refresh', headers: SAME_ORIGIN, cookies: { refresh_token: cookieToken } })
  const bodyRefresh = await send({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: bodyLogin.json().refreshToken } })
  secrets.push(cookieRefresh.json().accessToken, cookieOf(cookieRefresh)!.value, bodyRefresh.json().accessToken, bodyRefresh.json().refreshToken)
  // A refused refresh (a token that is not one) and a refused Bearer call log their refusal too.
  await send({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: 'X'.repeat(43) } })
  await send({ method: 'GET', url: '/api/auth/me', headers: bearer(`${bodyRefresh.json().accessToken}x`) })

  const access = bodyRefresh.json().accessToken as string
  await send({ method: 'GET', url: '/api/auth/me', headers: bearer(access) })
  await send({ method: 'POST', url: '/api/auth/password', headers: bearer(access), payload: { currentPassword: PASSWORD, newPassword: NEW_PASSWORD } })
  await send({ method: 'POST', url: '/api/auth/logout', payload: { refreshToken: bodyRefresh.json().refreshToken } })
  return { responses, secrets }
}

for (const level of ['info', 'debug', 'trace'] as const) {
  t.test(`at LOG_LEVEL=${level}: no password, refresh token or access token in the logs of a full flow`, async (t) => {
    const log = capture()
    const app = await buildTestApp(t, { LOG_LEVEL: level }, { logStream: log.stream })
    const { responses, secrets } = await fullFlow(app)
    t.equal(responses.length, 11)
    t.ok(responses.every((r) => r.statusCode < 500), 'no request failed')
    const text = log.text()
    t.ok(text.length > 1000, `${text.length} bytes of log`)
    for (const secret of new Set(secrets)) {
      t.ok(secret.length >= 12, 'a real secret')
      t.notOk(text.includes(secret), `not in the log: ${secret.slice(0, 10)}...`)
      // Nor a recognisable piece of it (a JWT's signature, a token's first half).
      t.notOk(text.includes(secret.slice(-20)), 'nor its last 20 characters')
    }
    t.notMatch(text, /Bearer ey/, 'no Authorization header value')
    t.notMatch(text, /refresh_token=/, 'no Cookie or Set-Cookie value')
    t.notMatch(text, /\$argon2id\$/, 'no password hash')
  })
}

t.test('one JSON line per request, carrying the request id that is also sent back as x-request-id', async (t) => {
  const log = capture()
  const app = await buildTestApp(t, { LOG_LEVEL: 'info' }, { logStream: log.stream })
  const { responses } = await fullFlow(app)
  await app.inject({ url: '/no/such/thing' })
  const requestLines = log.lines().filter((l) => l.msg === 'request')
  t.equal(requestLines.length, responses.length + 1, 'exactly one per request')
  const ids = responses.map((r) => r.headers['x-request-id'])
  for (const [i, res] of responses.entries()) {
    const line = requestLines[i]!
    t.match(res.headers['x-request-id'], /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)
    t.equal(line.reqId, ids[i], 'same id in the log line and the header')
    t.match(line, { level: 30, statusCode: res.statusCode, method: res.raw.req.method, ip: '127.0.0.1' })
    t.type(line.ms, 'number')
    t.type(line.time, 'number')
  }
  t.equal(new Set(ids).size, ids.length, 'ids are unique')
  t.match(requestLines.at(-1), { route: null, statusCode: 404 })
  t.equal(requestLines[0]!.route, '/api/auth/register', 'the route pattern is logged, not query strings')
})

t.test('the lines handlers write through request.log carry the id sent back as x-request-id', async (t) => {
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

t.test('token responses carry Cache-Control: no-store (RFC 6749 §5.1), in both transports', async (t) => {
  const app = await buildTestApp(t, {})
  const { responses } = await fullFlow(app)
  const tokenResponses = responses.filter((r) => r.statusCode === 200 && typeof r.json().accessToken === 'string')
  t.equal(tokenResponses.length, 4, 'two logins and two refreshes')
  for (const res of tokenResponses) {
    t.equal(res.headers['cache-control'], 'no-store')
    t.equal(res.headers.pragma, 'no-cache')
  }
  // Every other /api/auth answer is personal too and is not stored either.
  for (const res of responses) t.equal(res.headers['cache-control'], 'no-store', `${res.raw.req.url} ${res.statusCode}`)
})

t.test('the logger redacts secrets wherever a log call puts them', async (t) => {
  const log = capture()
  const app = await buildTestApp(t, { LOG_LEVEL: 'debug' }, { logStream: log.stream })
  const secret = (name: string): string => `${name}-s3cr3t-value-0123456789`
  app.log.info({
    request: { headers: { authorization: `Bearer ${secret('jwt')}`, cookie: `refresh_token=${secret('cookie')}` } },
    reply: { headers: { 'set-cookie': `refresh_token=${secret('set-cookie')}; HttpOnly` } },
    headers: { authorization: `Bearer ${secret('jwt2')}`, cookie: secret('cookie2'), 'set-cookie': secret('set-cookie2') },
    body: {
      password: secret('password'),
      currentPassword: secret('current'),
      newPassword: secret('new'),
      refreshToken: secret('refresh'),
      accessToken: secret('access'),
      token: secret('token')
    }
  }, 'a careless log call')
  const line = log.lines().find((l) => l.msg === 'a careless log call')
  t.ok(line)
  const text = log.text()
  for (const name of ['jwt', 'cookie', 'set-cookie', 'jwt2', 'cookie2', 'set-cookie2', 'password', 'current', 'new', 'refresh', 'access', 'token']) {
    t.notOk(text.includes(secret(name)), `${name} redacted`)
  }
  t.match(line, {
    request: { headers: { authorization: '[redacted]', cookie: '[redacted]' } },
    reply: { headers: { 'set-cookie': '[redacted]' } },
    headers: { authorization: '[redacted]', cookie: '[redacted]', 'set-cookie': '[redacted]' },
    body: { password: '[redacted]', refreshToken: '[redacted]', accessToken: '[redacted]' }
  })
  // Fastify's own request serializer keeps only method, url, host and address: no headers at all.
  app.log.info({ req: { headers: { authorization: `Bearer ${secret('jwt3')}` } } }, 'req')
  t.notOk(log.text().includes(secret('jwt3')))
})
