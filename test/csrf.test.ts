/**
 * The cross-site defences of cookie-mode requests (routes/auth/refresh-transport.ts). Each test
 * sends a request a forged page could make, checks the 403 and that nothing changed, then sends
 * the legitimate variant to show the defence is what refused it.
 */
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { bearer, buildTestApp, cookieOf, login, register } from './support/app.js'

const SELF = 'http://localhost:3000' // PUBLIC_URL in the test config
const SPA = 'https://app.example.com'

type Headers = Record<string, string>

const refresh = async (app: FastifyInstance, token: string, headers: Headers) =>
  await app.inject({ method: 'POST', url: '/api/auth/refresh', cookies: { refresh_token: token }, headers })

const logout = async (app: FastifyInstance, token: string, headers: Headers) =>
  await app.inject({ method: 'POST', url: '/api/auth/logout', cookies: { refresh_token: token }, headers })

const liveSessions = (app: FastifyInstance): number =>
  (app.sqlite.prepare('SELECT count(*) AS n FROM sessions WHERE revoked_at IS NULL').get() as { n: number }).n

async function setup (t: Test, env: Record<string, string> = {}) {
  const app = await buildTestApp(t, { CORS_ORIGINS: SPA, ...env })
  await register(app)
  const { refreshToken, accessToken } = await login(app, { headers: { origin: SELF, 'x-auth-request': '1' } })
  return { app, refreshToken, accessToken }
}

/** A refused refresh: 403 CROSS_SITE_REQUEST, no cookie set or cleared, and the token still unspent. */
async function assertRefused (t: Test, app: FastifyInstance, token: string, headers: Headers): Promise<void> {
  const res = await refresh(app, token, headers)
  t.equal(res.statusCode, 403, JSON.stringify(headers))
  t.equal(res.json().code, 'CROSS_SITE_REQUEST')
  t.equal(res.headers['set-cookie'], undefined, 'the cookie is left alone')
  const rows = app.sqlite.prepare('SELECT count(*) AS n FROM refresh_tokens WHERE spent_at IS NOT NULL').get() as { n: number }
  t.equal(rows.n, 0, 'the token was not spent')
}

t.test('Origin: a foreign or null Origin is refused; PUBLIC_URL and CORS_ORIGINS are accepted', async (t) => {
  const { app, refreshToken } = await setup(t)
  for (const origin of ['https://evil.example', 'null', 'http://localhost:3001', 'https://app.example.com.evil.example']) {
    await assertRefused(t, app, refreshToken, { origin })
  }
  const ok = await refresh(app, refreshToken, { origin: SPA, 'sec-fetch-site': 'cross-site' })
  t.equal(ok.statusCode, 200, 'a CORS_ORIGINS origin')
  t.equal((await refresh(app, cookieOf(ok)!.value, { origin: SELF, 'sec-fetch-site': 'same-origin' })).statusCode, 200, 'PUBLIC_URL\'s origin')
})

t.test('Sec-Fetch-Site: without an allowed Origin only same-origin passes', async (t) => {
  const { app, refreshToken } = await setup(t)
  // A browser that hides Origin (an extension, a proxy) still sends Fetch Metadata.
  for (const site of ['cross-site', 'same-site', 'none', 'something-new']) {
    await assertRefused(t, app, refreshToken, { 'sec-fetch-site': site })
  }
  // A page on a sibling subdomain or another port is same-site: SameSite=Strict does not stop it.
  await assertRefused(t, app, refreshToken, { 'sec-fetch-site': 'same-site', origin: 'http://localhost:4000' })
  const ok = await refresh(app, refreshToken, { 'sec-fetch-site': 'same-origin' })
  t.equal(ok.statusCode, 200, 'same-origin without Origin')
  const site = await refresh(app, cookieOf(ok)!.value, { 'sec-fetch-site': 'same-site', origin: SPA })
  t.equal(site.statusCode, 200, 'same-site with an allowed Origin')
})

t.test('neither Origin nor Sec-Fetch-Site: a request with the cookie needs an allowed Referer', async (t) => {
  const { app, refreshToken } = await setup(t)
  await assertRefused(t, app, refreshToken, {})
  await assertRefused(t, app, refreshToken, { referer: 'https://evil.example/page' })
  await assertRefused(t, app, refreshToken, { referer: 'not a url' })
  const ok = await refresh(app, refreshToken, { referer: `${SPA}/settings?tab=1` })
  t.equal(ok.statusCode, 200, 'a Referer on the allowlist proves the origin')
  const self = await refresh(app, cookieOf(ok)!.value, { referer: `${SELF}/demo/` })
  t.equal(self.statusCode, 200)

  // A request without the cookie has nothing to forge: a non-browser client may log in.
  const plain = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'alice', password: 'correct horse battery staple' } })
  t.equal(plain.statusCode, 200)
  const missing = await app.inject({ method: 'POST', url: '/api/auth/refresh' })
  t.equal(missing.json().code, 'REFRESH_TOKEN_MISSING', 'no cookie: nothing to refuse, 401 as usual')
  // curl in cookie mode: send the service's own origin.
  t.equal((await refresh(app, cookieOf(self)!.value, { origin: SELF })).statusCode, 200, 'curl -H "Origin: http://localhost:3000"')
})

t.test('logout in cookie mode is checked the same way and ends nothing when refused', async (t) => {
  const { app, refreshToken, accessToken } = await setup(t)
  const attempts: Headers[] = [{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }, {}]
  for (const headers of attempts) {
    const res = await logout(app, refreshToken, headers)
    t.equal(res.statusCode, 403, JSON.stringify(headers))
    t.equal(res.json().code, 'CROSS_SITE_REQUEST')
    t.equal(res.headers['set-cookie'], undefined)
    t.equal(liveSessions(app), 1, 'the session is alive')
  }
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(accessToken) })).statusCode, 200)
  const ok = await logout(app, refreshToken, { origin: SPA })
  t.equal(ok.statusCode, 204)
  t.equal(liveSessions(app), 0)
})

t.test('login in cookie mode is checked; nothing is created when refused', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: SPA })
  await register(app)
  const attempts: Headers[] = [{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }]
  for (const headers of attempts) {
    const res = await login(app, { headers })
    t.equal(res.res.statusCode, 403, JSON.stringify(headers))
    t.equal(res.res.json().code, 'CROSS_SITE_REQUEST')
    t.equal(res.res.headers['set-cookie'], undefined)
  }
  t.equal((app.sqlite.prepare('SELECT count(*) AS n FROM sessions').get() as { n: number }).n, 0)
  t.equal((await login(app, { headers: { origin: SPA, 'sec-fetch-site': 'cross-site' } })).res.statusCode, 200)
})

t.test('body mode carries its own proof and is not subject to the cookie checks', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: SPA, REFRESH_COOKIE_SAMESITE: 'None' })
  await register(app)
  const { refreshToken } = await login(app, { transport: 'body', headers: { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' } })
  const res = await app.inject({
    method: 'POST', url: '/api/auth/refresh', payload: { refreshToken }, headers: { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' }
  })
  t.equal(res.statusCode, 200)
  t.ok(res.json().refreshToken)
})

t.test('SameSite=None: the cookie says so, is Secure, and cookie-mode requests need X-Auth-Request: 1', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: SPA, REFRESH_COOKIE_SAMESITE: 'None' })
  await register(app)
  const bare = await login(app, { headers: { origin: SPA } })
  t.equal(bare.res.statusCode, 403, 'login without the custom header')
  t.equal(bare.res.json().code, 'CROSS_SITE_REQUEST')
  const wrong = await login(app, { headers: { origin: SPA, 'x-auth-request': 'yes' } })
  t.equal(wrong.res.statusCode, 403, 'the header must be exactly 1')
  const { res, refreshToken } = await login(app, { headers: { origin: SPA, 'x-auth-request': '1' } })
  t.equal(res.statusCode, 200)
  t.match(String(res.headers['set-cookie']), /; HttpOnly; Secure; SameSite=None$/)
  await assertRefused(t, app, refreshToken, { origin: SPA, 'sec-fetch-site': 'cross-site' })
  const ok = await refresh(app, refreshToken, { origin: SPA, 'sec-fetch-site': 'cross-site', 'x-auth-request': '1' })
  t.equal(ok.statusCode, 200)
  t.equal((await logout(app, cookieOf(ok)!.value, { origin: SPA })).statusCode, 403, 'logout too')
  // The header does not replace the Origin check.
  t.equal((await refresh(app, cookieOf(ok)!.value, { origin: 'https://evil.example', 'x-auth-request': '1' })).statusCode, 403)
})

t.test('Strict and Lax do not require the custom header; the cookie carries the configured SameSite', async (t) => {
  for (const sameSite of ['Strict', 'Lax'] as const) {
    const app = await buildTestApp(t, { REFRESH_COOKIE_SAMESITE: sameSite.toLowerCase() })
    await register(app)
    const { res } = await login(app, { headers: { origin: SELF } })
    t.equal(res.statusCode, 200)
    t.match(String(res.headers['set-cookie']), new RegExp(`^refresh_token=[A-Za-z0-9_-]{64}; Max-Age=604800; Path=/api/auth; HttpOnly; Secure; SameSite=${sameSite}$`))
  }
})
