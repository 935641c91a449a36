import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { bearer, buildTestApp, login, register, TEST_ENV } from '../support/app.js'

const SPA = 'https://app.example.com'
const OTHER = 'https://evil.example'

const preflight = (origin: string, method = 'POST', headers = 'authorization, content-type, x-auth-request') => ({
  method: 'OPTIONS' as const,
  url: '/api/auth/refresh',
  headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': headers }
})

t.test('a preflight from a listed origin: that origin (never *), credentials, the SPA headers, cached', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: `${SPA}, https://admin.example.com` })
  const res = await app.inject(preflight(SPA))
  t.equal(res.statusCode, 204)
  t.equal(res.headers['access-control-allow-origin'], SPA)
  t.equal(res.headers['access-control-allow-credentials'], 'true')
  const allowed = String(res.headers['access-control-allow-headers']).toLowerCase().split(/,\s*/)
  t.same(allowed.sort(), ['authorization', 'content-type', 'x-auth-request'])
  t.match(res.headers['access-control-allow-methods'], /\bPOST\b/)
  t.match(res.headers['access-control-allow-methods'], /\bDELETE\b/)
  t.equal(res.headers['access-control-max-age'], '7200')
  t.match(res.headers.vary, /\bOrigin\b/)
  t.equal((await app.inject(preflight('https://admin.example.com'))).headers['access-control-allow-origin'], 'https://admin.example.com', 'each listed origin is reflected')
})

t.test('an unknown origin gets no CORS headers, on preflights and on actual requests', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: SPA })
  for (const origin of [OTHER, 'null', `${SPA}.evil.example`, 'http://app.example.com', `${SPA}:8443`]) {
    const pre = await app.inject(preflight(origin))
    t.equal(pre.headers['access-control-allow-origin'], undefined, `preflight ${origin}`)
    t.equal(pre.headers['access-control-allow-credentials'], undefined)
    t.equal(pre.statusCode, 404, 'answered like an unknown route')
    t.equal(pre.json().code, 'NOT_FOUND')
    const res = await app.inject({ url: '/health', headers: { origin } })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['access-control-allow-origin'], undefined, `GET ${origin}`)
    t.match(res.headers.vary, /\bOrigin\b/, 'Vary: Origin also when the origin is refused')
  }
})

t.test('without CORS_ORIGINS no origin is allowed, not even the service\'s own', async (t) => {
  const app = await buildTestApp(t)
  for (const origin of [SPA, 'http://localhost:3000']) {
    const res = await app.inject(preflight(origin))
    t.equal(res.headers['access-control-allow-origin'], undefined)
  }
})

t.test('actual responses, errors included, let a listed origin read them', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: SPA })
  await register(app)
  const { accessToken } = await login(app, { headers: { origin: SPA } })
  const me = await app.inject({ url: '/api/auth/me', headers: { origin: SPA, ...bearer(accessToken) } })
  t.equal(me.statusCode, 200)
  t.equal(me.headers['access-control-allow-origin'], SPA)
  t.equal(me.headers['access-control-allow-credentials'], 'true')
  t.match(me.headers.vary, /\bOrigin\b/)
  const denied = await app.inject({ url: '/api/auth/me', headers: { origin: SPA } })
  t.equal(denied.statusCode, 401)
  t.equal(denied.headers['access-control-allow-origin'], SPA, 'the 401 is readable, so the app can refresh')
  t.match(denied.headers['access-control-expose-headers'], /WWW-Authenticate/)
  t.match(denied.headers['access-control-expose-headers'], /Retry-After/)
})

t.test('a 429 carries CORS headers too, so the app can read Retry-After', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: SPA, RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_MAX: '1' })
  await app.inject({ url: '/api/auth/me', headers: { origin: SPA } })
  const res = await app.inject({ url: '/api/auth/me', headers: { origin: SPA } })
  t.equal(res.statusCode, 429)
  t.equal(res.headers['access-control-allow-origin'], SPA)
  t.ok(res.headers['retry-after'])
})

t.test('config refuses a wildcard or null origin in CORS_ORIGINS', async (t) => {
  for (const value of ['*', `${SPA},*`, 'null']) {
    t.throws(() => loadConfig({ ...TEST_ENV, CORS_ORIGINS: value }), /not allowed/, value)
  }
  t.same(loadConfig({ ...TEST_ENV, CORS_ORIGINS: 'https://App.Example.com:443/path' }).corsOrigins, [SPA], 'normalised to the origin')
})
