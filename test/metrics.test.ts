import { once } from 'node:events'
import { request as httpRequest } from 'node:http'
import { createServer, type AddressInfo } from 'node:net'
import t from 'tap'
import { bearer, buildTestApp, fakeDate, login, PASSWORD, refreshWithBody, register, SECOND, testConfig } from './helper.js'
import { adminSession, metric, scrape } from './ops-helper.js'

function get (port: number, path: string): Promise<{ status: number, type: string, body: string }> {
  return new Promise((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port, path }, (res) => {
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

t.test('login outcomes: success, invalid credentials, disabled, throttled', async (t) => {
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
  t.equal(metric(text, 'auth_login_total', { outcome: 'invalid_credentials' }), 3)
  t.equal(metric(text, 'auth_login_total', { outcome: 'throttled' }), 1)
  t.equal(metric(text, 'auth_login_total', { outcome: 'disabled' }), 1)
  t.equal(metric(text, 'auth_rate_limited_total', { route: '/api/auth/login' }), 1)
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
  const app = await buildTestApp(t, { METRICS_PORT: '0' })
  t.equal((await app.inject({ url: '/metrics' })).statusCode, 404, 'not on the main port')
  await app.listen({ host: '127.0.0.1', port: 0 })
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

t.test('a METRICS_PORT that cannot be bound stops the service with exit code 1', async (t) => {
  const blocker = createServer()
  await new Promise<void>((resolve) => blocker.listen({ host: '127.0.0.1', port: 0 }, resolve))
  t.teardown(() => { blocker.close() })
  const taken = (blocker.address() as AddressInfo).port
  const app = await buildTestApp(t, { METRICS_PORT: String(taken), HOST: '127.0.0.1' })
  await app.listen({ host: '127.0.0.1', port: 0 })
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
