import t from 'tap'
import { bearer, buildTestApp, login, refreshWithBody, refreshWithCookie, register, SAME_ORIGIN } from '../support/app.js'

const CLEARED = /^refresh_token=; Max-Age=0; Path=\/api\/auth; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; Secure; SameSite=Strict$/

t.test('cookie mode: 204, cookie cleared, session ended (refresh and access tokens)', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const { refreshToken, accessToken } = await login(app)
  const res = await app.inject({ method: 'POST', url: '/api/auth/logout', cookies: { refresh_token: refreshToken }, headers: SAME_ORIGIN })
  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  t.match(String(res.headers['set-cookie']), CLEARED)
  t.equal((await refreshWithCookie(app, refreshToken)).json().code, 'SESSION_REVOKED')
  const me = await app.inject({ url: '/api/auth/me', headers: bearer(accessToken) })
  t.equal(me.statusCode, 401)
  t.equal(me.json().code, 'SESSION_ENDED')
  t.match(me.headers['www-authenticate'], /^Bearer realm="auth", error="invalid_token"/)
})

t.test('body mode: 204, no cookie, session ended', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const { refreshToken } = await login(app, { transport: 'body' })
  const res = await app.inject({ method: 'POST', url: '/api/auth/logout', payload: { refreshToken } })
  t.equal(res.statusCode, 204)
  t.equal(res.headers['set-cookie'], undefined)
  t.equal((await refreshWithBody(app, refreshToken)).statusCode, 401)
})

t.test('logout with a spent token of the session ends it too', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const { refreshToken: t0 } = await login(app, { transport: 'body' })
  const t1 = (await refreshWithBody(app, t0)).json().refreshToken
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/logout', payload: { refreshToken: t0 } })).statusCode, 204)
  t.equal((await refreshWithBody(app, t1)).statusCode, 401)
})

t.test('204 also with no token, an unknown one or a malformed one', async (t) => {
  const app = await buildTestApp(t)
  for (const opts of [{}, { payload: { refreshToken: 'A'.repeat(43) } }, { payload: { refreshToken: 'junk' } }, { cookies: { refresh_token: 'junk' } }]) {
    const res = await app.inject({ method: 'POST', url: '/api/auth/logout', headers: SAME_ORIGIN, ...opts })
    t.equal(res.statusCode, 204, JSON.stringify(opts))
  }
})

t.test('cookie-mode logout from a foreign Origin: 403 and the session stays', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const { refreshToken } = await login(app)
  const res = await app.inject({ method: 'POST', url: '/api/auth/logout', cookies: { refresh_token: refreshToken }, headers: { origin: 'https://evil.example' } })
  t.equal(res.statusCode, 403)
  t.equal(res.json().code, 'CROSS_SITE_REQUEST')
  t.equal((await refreshWithCookie(app, refreshToken)).statusCode, 200)
})

t.test('logout-all: every session of the user ends; other users keep theirs', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  await register(app, 'bob')
  const a1 = await login(app, { transport: 'body' })
  const a2 = await login(app, { transport: 'body' })
  const b = await login(app, { username: 'bob', transport: 'body' })
  const res = await app.inject({ method: 'POST', url: '/api/auth/logout-all', headers: bearer(a1.accessToken) })
  t.equal(res.statusCode, 204)
  t.equal((await refreshWithBody(app, a1.refreshToken)).statusCode, 401)
  t.equal((await refreshWithBody(app, a2.refreshToken)).statusCode, 401)
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(a2.accessToken) })).statusCode, 401)
  t.equal((await refreshWithBody(app, b.refreshToken)).statusCode, 200)
  const unauth = await app.inject({ method: 'POST', url: '/api/auth/logout-all' })
  t.equal(unauth.statusCode, 401)
  t.equal(unauth.headers['www-authenticate'], 'Bearer realm="auth"')
})
