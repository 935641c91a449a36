import { once } from 'node:events'
import { request as httpRequest } from 'node:http'
import { createServer, type AddressInfo } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { bearer, buildTestApp, login, PASSWORD, refreshWithBody, register, testConfig } from '../support/app.js'
import { fakeDate, SECOND } from '../support/clock.js'
import { adminSession, metric, scrape } from '../support/metrics.js'
import { listen } from '../support/server.js'

function get (port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number, type: string, body: string }> {
  return new Promise((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port, path, headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }))
    }).on('error', reject).end()
  })
}

t.test('/metrics answers Prometheus text, with the process metrics too', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.match(res.body, /# TYPE http_request_duration_seconds histogram/)
  t.match(res.body, /# TYPE auth_login_total counter/)
  t.match(res.body, /^process_cpu_user_seconds_total /m)
  t.match(res.body, /^nodejs_eventloop_lag_seconds /m)
})

t.test('request duration by route pattern and status', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const { accessToken } = await login(app, { transport: 'body' })
  await app.inject({ url: '/api/auth/sessions', headers: bearer(accessToken) })
  await app.inject({ method: 'DELETE', url: '/api/auth/sessions/nope', headers: bearer(accessToken) })
  await app.inject({ url: '/no/such/path/1' })
  await app.inject({ url: '/no/such/path/2' })
  const text = await scrape(app)
  const count = (route: string, status: string, method = 'GET') =>
    metric(text, 'http_request_duration_seconds_count', { method, route, status_code: status })
  t.equal(count('/api/auth/register', '201', 'POST'), 1)
  t.equal(count('/api/auth/login', '200', 'POST'), 1)
  t.equal(count('/api/auth/sessions', '200'), 1)
  t.equal(count('/api/auth/sessions/:id', '404', 'DELETE'), 1, 'the route pattern, not the path')
  t.equal(count('unmatched', '404'), 2, 'unknown paths share one series')
  t.ok(metric(text, 'http_request_duration_seconds_sum', { route: '/api/auth/login' }) > 0)
})

t.test('login outcomes: success, invalid credentials (a disabled account among them), throttled', async (t) => {
  const app = await buildTestApp(t, { RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: '2' })
  await register(app)
  await register(app, 'bob')
  t.equal((await login(app)).res.statusCode, 200)
  t.equal((await login(app, { username: 'bob', password: 'wrong password here' })).res.statusCode, 401)
  t.equal((await login(app, { username: 'nobody', password: PASSWORD })).res.statusCode, 401)
  t.equal((await login(app, { username: 'bob', password: 'wrong password again' })).res.statusCode, 401)
  t.equal((await login(app, { username: 'bob', password: PASSWORD })).res.statusCode, 429, 'bob is throttled')

  const admin = await adminSession(app)
  await app.inject({ method: 'POST', url: '/api/admin/users/name:alice/disable', headers: admin.headers })
  t.equal((await login(app)).res.statusCode, 401)

  const text = await scrape(app)
  t.equal(metric(text, 'auth_login_total', { outcome: 'success' }), 2, 'alice, then the admin')
  t.equal(metric(text, 'auth_login_total', { outcome: 'invalid_credentials' }), 4, 'the disabled account counts as invalid credentials')
  t.equal(metric(text, 'auth_login_total', { outcome: 'throttled' }), 1)
  t.notMatch(text, /outcome="disabled"/)
  t.equal(metric(text, 'auth_rate_limited_total', { route: '/api/auth/login' }), 1)
})

/** Every counter-like sample of our own metrics (counts, not timings), by name and labels. */
function samples (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !/^(auth_|http_)/.test(line)) continue
    const m = /^(\S+(?:\{.*\})?) (\S+)$/.exec(line)
    if (m === null || /_(bucket|sum)\{/.test(m[1]!) || /_sum$/.test(m[1]!)) continue
    out.set(m[1]!, Number(m[2]))
  }
  return out
}

function delta (before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [key, value] of after) if (value !== (before.get(key) ?? 0)) out[key] = value - (before.get(key) ?? 0)
  return out
}

t.test('no metric tells a right password of a disabled account from a wrong one', async (t) => {
  const app = await buildTestApp(t)
  await register(app, 'carol')
  await register(app, 'dave')
  const admin = await adminSession(app)
  t.equal((await app.inject({ method: 'POST', url: '/api/admin/users/name:carol/disable', headers: admin.headers })).statusCode, 200)

  const s0 = samples(await scrape(app))
  const right = await login(app, { username: 'carol', password: PASSWORD })
  const s1 = samples(await scrape(app))
  const wrong = await login(app, { username: 'dave', password: 'not the password at all' })
  const s2 = samples(await scrape(app))
  t.equal(right.res.statusCode, 401)
  t.same(right.res.json(), wrong.res.json(), 'the same answer')
  const byRight = delta(s0, s1)
  const byWrong = delta(s1, s2)
  // The scrape between them is counted in both (its own request) and cancels out.
  t.same(byRight, byWrong, 'the same series moved by the same amounts')
  t.ok(Object.keys(byRight).some((k) => k.startsWith('auth_login_total')), 'the login was counted')
})

t.test('refresh outcomes: rotated, within the reuse interval, reuse detected, expired, invalid, missing', async (t) => {
  const clock = fakeDate(t)
  const app = await buildTestApp(t, { REFRESH_REUSE_INTERVAL: '10s', REFRESH_TOKEN_TTL: '1h' })
  await register(app)
  const { refreshToken: first } = await login(app, { transport: 'body' })
  t.equal((await refreshWithBody(app, first)).statusCode, 200, 'rotated')
  clock.advance(2 * SECOND)
  t.equal((await refreshWithBody(app, first)).statusCode, 200, 'within the reuse interval')
  clock.advance(20 * SECOND)
  t.equal((await refreshWithBody(app, first)).statusCode, 401, 'reuse detected')

  const { refreshToken: second } = await login(app, { transport: 'body' })
  clock.advance(2 * 3600 * SECOND)
  t.equal((await refreshWithBody(app, second)).statusCode, 401, 'expired')
  t.equal((await refreshWithBody(app, 'not-a-token')).statusCode, 401, 'invalid')
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: {} })).statusCode, 401, 'missing')

  const text = await scrape(app)
  t.equal(metric(text, 'auth_refresh_total', { outcome: 'rotated' }), 1)
  t.equal(metric(text, 'auth_refresh_total', { outcome: 'reuse_interval' }), 1)
  t.equal(metric(text, 'auth_refresh_total', { outcome: 'reuse_detected' }), 1)
  t.equal(metric(text, 'auth_refresh_total', { outcome: 'expired' }), 1)
  t.equal(metric(text, 'auth_refresh_total', { outcome: 'invalid' }), 1)
  t.equal(metric(text, 'auth_refresh_total', { outcome: 'missing' }), 1)
})

t.test('rate-limit rejections are counted by route; /metrics itself is never limited', async (t) => {
  const app = await buildTestApp(t, { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_REGISTER_MAX: '1', RATE_LIMIT_MAX: '3' })
  t.equal((await register(app, 'carol')).statusCode, 201)
  t.equal((await register(app, 'dave')).statusCode, 429)
  for (let i = 0; i < 10; i++) t.equal((await app.inject({ url: '/metrics' })).statusCode, 200)
  const text = await scrape(app)
  t.equal(metric(text, 'auth_rate_limited_total', { route: '/api/auth/register' }), 1)
})

t.test('password hashing time: one hash per register, one verify per login (unknown users too)', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  await login(app)
  await login(app, { username: 'nobody' })
  const text = await scrape(app)
  t.equal(metric(text, 'auth_password_hash_duration_seconds_count', { operation: 'hash' }), 1)
  t.equal(metric(text, 'auth_password_hash_duration_seconds_count', { operation: 'verify' }), 2)
  t.ok(metric(text, 'auth_password_hash_duration_seconds_sum', { operation: 'hash' }) > 0)
})

t.test('live sessions are counted at scrape time; signing-key age and JWKS size are reported', async (t) => {
  const clock = fakeDate(t)
  const app = await buildTestApp(t)
  await register(app)
  t.equal(metric(await scrape(app), 'auth_sessions_live'), 0)
  const a = await login(app, { transport: 'body' })
  await login(app, { transport: 'body' })
  t.equal(metric(await scrape(app), 'auth_sessions_live'), 2)
  await app.inject({ method: 'POST', url: '/api/auth/logout', payload: { refreshToken: a.refreshToken } })
  t.equal(metric(await scrape(app), 'auth_sessions_live'), 1)

  clock.advance(3600 * SECOND)
  const text = await scrape(app)
  const age = metric(text, 'auth_signing_key_age_seconds', { alg: 'ES256' })
  t.ok(age >= 3600 && age < 3700, `key age ${age}s`)
  t.ok(metric(text, 'auth_jwks_keys') >= 1)
})

t.test('METRICS_PORT serves /metrics on its own listener and not on the main port', async (t) => {
  const { app } = await listen(t, { METRICS_PORT: '0' })
  t.equal((await app.inject({ url: '/metrics' })).statusCode, 404, 'not on the main port')
  // The metrics listener opens in the app's onListen hook, just after listen() resolves.
  if (!app.metricsServer!.listening) await once(app.metricsServer!, 'listening')
  const address = app.metricsServer!.address()
  if (address === null || typeof address === 'string') throw new Error('no metrics address')
  t.equal(address.address, '127.0.0.1', 'bound to HOST')
  await register(app)
  const res = await get(address.port, '/metrics')
  t.equal(res.status, 200)
  t.match(res.type, /^text\/plain/)
  t.equal(metric(res.body, 'http_request_duration_seconds_count', { route: '/api/auth/register', status_code: '201' }), 1)
  t.equal((await get(address.port, '/other')).status, 404)
  await app.close()
  t.notOk(app.metricsServer!.listening, 'closed with the app')
})

t.test('METRICS_PORT with METRICS_TOKEN: the own listener wants the token too', async (t) => {
  const token = 'another-scrape-token-0123456789abcdef'
  const { app } = await listen(t, { METRICS_PORT: '0', METRICS_TOKEN: token })
  if (!app.metricsServer!.listening) await once(app.metricsServer!, 'listening')
  const { port } = app.metricsServer!.address() as AddressInfo
  const none = await get(port, '/metrics')
  t.equal(none.status, 401)
  t.equal(JSON.parse(none.body).code, 'AUTHORIZATION_REQUIRED')
  const right = await get(port, '/metrics', bearer(token))
  t.equal(right.status, 200)
})

t.test('a METRICS_PORT that cannot be bound stops the service with exit code 1', async (t) => {
  const blocker = createServer()
  await new Promise<void>((resolve) => blocker.listen({ host: '127.0.0.1', port: 0 }, resolve))
  t.teardown(() => { blocker.close() })
  const taken = (blocker.address() as AddressInfo).port
  const { app } = await listen(t, { METRICS_PORT: String(taken), HOST: '127.0.0.1' })
  t.ok(app.server.listening)
  for (let i = 0; i < 100 && app.server.listening; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  t.notOk(app.server.listening, 'the main listener was closed too')
  t.equal(process.exitCode, 1)
  process.exitCode = 0
})

t.test('METRICS_PORT must differ from PORT', async (t) => {
  t.throws(() => testConfig({ PORT: '3000', METRICS_PORT: '3000' }), /METRICS_PORT must differ from PORT/)
  t.equal(testConfig({ METRICS_PORT: '9100' }).metrics.port, 9100)
  t.equal(testConfig().metrics.port, null)
  t.equal(testConfig().metrics.enabled, true)
})

async function productionApp (t: Test, env: Record<string, string> = {}): Promise<FastifyInstance> {
  const dir = mkdtempSync(join(tmpdir(), 'auth-metrics-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const app = await buildApp(loadConfig({
    NODE_ENV: 'production', DATABASE_URL: `file:${join(dir, 'auth.db')}`, PUBLIC_URL: 'http://localhost:3000', LOG_LEVEL: 'silent', ...env
  }))
  t.teardown(() => app.close())
  return app
}

t.test('production: /metrics is not served on the public port by default', async (t) => {
  const app = await productionApp(t)
  const res = await app.inject({ url: '/metrics' })
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'NOT_FOUND')
})

t.test('METRICS_TOKEN: /metrics on the main port wants that bearer token', async (t) => {
  const token = 'a-metrics-scrape-token-of-32-chars!'
  const app = await productionApp(t, { METRICS_TOKEN: token })
  const none = await app.inject({ url: '/metrics' })
  t.equal(none.statusCode, 401)
  t.equal(none.json().code, 'AUTHORIZATION_REQUIRED')
  const wrong = await app.inject({ url: '/metrics', headers: bearer(token.replace('a', 'b')) })
  t.equal(wrong.statusCode, 401)
  const right = await app.inject({ url: '/metrics', headers: bearer(token) })
  t.equal(right.statusCode, 200)
  t.match(right.body, /# TYPE auth_login_total counter/)
})

t.test('METRICS_TOKEN must be long enough in production', async (t) => {
  t.throws(() => loadConfig({ NODE_ENV: 'production', DATABASE_URL: 'file:/tmp/x.db', PUBLIC_URL: 'http://localhost:3000', METRICS_TOKEN: 'short' }), /METRICS_TOKEN/)
})
