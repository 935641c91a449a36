import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { bearer, buildTestApp, cookieOf, login, refreshWithBody, refreshWithCookie, register } from '../support/app.js'
import { count, rows } from '../support/db.js'
import { DAY, fakeDate, HOUR, MINUTE, SECOND } from '../support/clock.js'
import { sidOf } from '../support/jwt.js'

const liveSessions = async (app: FastifyInstance): Promise<number> =>
  await count(app, 'SELECT count(*) AS n FROM sessions WHERE revoked_at IS NULL')

t.test('cookie mode: each refresh rotates; the new token only in the cookie', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const first = await login(app)
  const res = await refreshWithCookie(app, first.refreshToken)
  t.equal(res.statusCode, 200)
  t.same(Object.keys(res.json()).sort(), ['accessToken', 'expiresIn', 'tokenType'])
  t.equal(res.headers['cache-control'], 'no-store')
  const next = cookieOf(res)!
  t.not(next.value, first.refreshToken)
  t.match(String(res.headers['set-cookie']), /^refresh_token=[A-Za-z0-9_-]{64}; Max-Age=604800; Path=\/api\/auth; HttpOnly; Secure; SameSite=Strict$/)
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(res.json().accessToken) })).statusCode, 200)
  t.equal((await refreshWithCookie(app, next.value)).statusCode, 200, 'the new token works')
  t.equal(await liveSessions(app), 1)
})

t.test('body mode: refreshToken in the body, no cookie; a body token wins over a cookie', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const a = await login(app, { transport: 'body' })
  const b = await login(app, { transport: 'body' })
  const res = await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: a.refreshToken }, cookies: { refresh_token: b.refreshToken } })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['set-cookie'], undefined)
  t.match(res.json().refreshToken, /^[A-Za-z0-9_-]{64}$/)
  t.equal(sidOf(res.json().accessToken), sidOf(a.accessToken), 'the body token was used')
  t.equal((await refreshWithBody(app, b.refreshToken)).statusCode, 200, 'the cookie token was left unspent')
})

t.test('401 for a missing, malformed or unknown token', async (t) => {
  const app = await buildTestApp(t)
  const missing = await app.inject({ method: 'POST', url: '/api/auth/refresh' })
  t.equal(missing.statusCode, 401)
  t.equal(missing.json().code, 'REFRESH_TOKEN_MISSING')
  for (const token of ['nope', 'A'.repeat(43), 'x'.repeat(500), 'eyJhbGciOiJFUzI1NiJ9.e30.sig']) {
    const res = await refreshWithBody(app, token)
    t.equal(res.statusCode, 401, token.slice(0, 20))
    t.equal(res.json().code, 'REFRESH_TOKEN_INVALID')
  }
  const cookie = await refreshWithCookie(app, 'A'.repeat(43))
  t.equal(cookie.statusCode, 401)
  t.match(String(cookie.headers['set-cookie']), /^refresh_token=; Max-Age=0; Path=\/api\/auth; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; Secure; SameSite=Strict$/, 'the bad cookie is cleared')
})

t.test('a spent token re-presented within the reuse interval gets the same new token; the session lives', async (t) => {
  const clock = fakeDate(t)
  const app = await buildTestApp(t)
  await register(app)
  const { refreshToken: t0 } = await login(app, { transport: 'body' })
  const first = await refreshWithBody(app, t0)
  const t1 = first.json().refreshToken
  clock.advance(9 * SECOND)
  const again = await refreshWithBody(app, t0)
  t.equal(again.statusCode, 200)
  t.equal(again.json().refreshToken, t1, 'the same successor')
  t.not(again.json().accessToken, first.json().accessToken, 'a fresh access token')
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(again.json().accessToken) })).statusCode, 200)

  // The session moved on (t1 → t2): re-presenting t0 within its interval answers the current token.
  const t2 = (await refreshWithBody(app, t1)).json().refreshToken
  const third = await refreshWithBody(app, t0)
  t.equal(third.statusCode, 200)
  t.equal(third.json().refreshToken, t2, 'the session\'s current token')
  t.equal(await liveSessions(app), 1)
  t.equal((await refreshWithBody(app, t2)).statusCode, 200, 'the current token still rotates')
})

t.test('cookie mode: the re-presented token gets the same new cookie', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const { refreshToken } = await login(app)
  const a = await refreshWithCookie(app, refreshToken)
  const b = await refreshWithCookie(app, refreshToken)
  t.equal(b.statusCode, 200)
  t.equal(cookieOf(b)!.value, cookieOf(a)!.value)
})

t.test('concurrent refreshes with one token all succeed with one identical new token', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const { refreshToken } = await login(app, { transport: 'body' })
  const results = await Promise.all(Array.from({ length: 20 }, () => refreshWithBody(app, refreshToken)))
  t.same(results.map((r) => r.statusCode), Array(20).fill(200))
  const tokens = new Set(results.map((r) => r.json().refreshToken))
  t.equal(tokens.size, 1, 'one successor for all')
  t.equal(await liveSessions(app), 1)
  t.equal(await count(app, 'SELECT count(*) AS n FROM refresh_tokens WHERE spent_at IS NULL'), 1)
  t.equal((await refreshWithBody(app, [...tokens][0]!)).statusCode, 200)
})

t.test('a spent token after the reuse interval ends the whole session, newest token included', async (t) => {
  const clock = fakeDate(t)
  const app = await buildTestApp(t)
  await register(app)
  const other = await login(app, { transport: 'body' })
  const { refreshToken: t0 } = await login(app, { transport: 'body' })
  const r1 = (await refreshWithBody(app, t0)).json()
  clock.advance(11 * SECOND)
  const reuse = await refreshWithBody(app, t0)
  t.equal(reuse.statusCode, 401)
  t.equal(reuse.json().code, 'TOKEN_REUSED')

  const newest = await refreshWithBody(app, r1.refreshToken)
  t.equal(newest.statusCode, 401, 'the thief\'s (or victim\'s) newest token is dead too')
  t.equal(newest.json().code, 'SESSION_REVOKED')
  const me = await app.inject({ url: '/api/auth/me', headers: bearer(r1.accessToken) })
  t.equal(me.statusCode, 401, 'its access tokens stop working on this service')
  t.equal(me.json().code, 'SESSION_ENDED')

  t.equal((await refreshWithBody(app, other.refreshToken)).statusCode, 200, 'other sessions are untouched')
  const [row] = await rows<{ r: string }>(app, 'SELECT revoked_reason AS r FROM sessions WHERE revoked_at IS NOT NULL')
  t.equal(row!.r, 'reuse')
})

t.test('REFRESH_REUSE_INTERVAL is configurable (0 = any reuse is theft)', async (t) => {
  const app = await buildTestApp(t, { REFRESH_REUSE_INTERVAL: '0' })
  await register(app)
  const { refreshToken } = await login(app, { transport: 'body' })
  const clock = fakeDate(t)
  t.equal((await refreshWithBody(app, refreshToken)).statusCode, 200)
  clock.advance(1)
  t.equal((await refreshWithBody(app, refreshToken)).json().code, 'TOKEN_REUSED')
})

t.test('sliding expiry: a token unused for REFRESH_TOKEN_TTL has expired; each use extends it', async (t) => {
  const clock = fakeDate(t)
  const app = await buildTestApp(t, { REFRESH_TOKEN_TTL: '1h', SESSION_MAX_AGE: '1d' })
  await register(app)
  let token = (await login(app, { transport: 'body' })).refreshToken
  for (let i = 0; i < 3; i++) {
    clock.advance(50 * MINUTE)
    const res = await refreshWithBody(app, token)
    t.equal(res.statusCode, 200, `use ${i + 1} after 50 min`)
    token = res.json().refreshToken
  }
  clock.advance(HOUR + SECOND)
  const late = await refreshWithBody(app, token)
  t.equal(late.statusCode, 401)
  t.equal(late.json().code, 'REFRESH_TOKEN_EXPIRED')
  const list = await app.inject({ url: '/api/auth/sessions', headers: bearer((await login(app)).accessToken) })
  t.equal(list.json().length, 1, 'the idle session is no longer listed as live')
})

t.test('absolute lifetime: no session outlives SESSION_MAX_AGE; the cookie Max-Age is capped by it', async (t) => {
  const clock = fakeDate(t)
  const app = await buildTestApp(t, { REFRESH_TOKEN_TTL: '7d', SESSION_MAX_AGE: '10d' })
  await register(app)
  let token = (await login(app)).refreshToken
  clock.advance(5 * DAY)
  let res = await refreshWithCookie(app, token)
  t.equal(res.statusCode, 200)
  t.equal(cookieOf(res)!.maxAge, 5 * 24 * 3600, 'Max-Age = what remains of the session (5d), not the TTL (7d)')
  token = cookieOf(res)!.value
  clock.advance(4 * DAY)
  res = await refreshWithCookie(app, token)
  t.equal(cookieOf(res)!.maxAge, 1 * 24 * 3600)
  token = cookieOf(res)!.value
  clock.advance(DAY)
  res = await refreshWithCookie(app, token)
  t.equal(res.statusCode, 401, 'past the absolute lifetime the session has ended')
  t.equal(res.json().code, 'REFRESH_TOKEN_EXPIRED')
})

t.test('a disabled user cannot refresh', async (t) => {
  const app = await buildTestApp(t)
  const user = (await register(app)).json()
  const { refreshToken } = await login(app, { transport: 'body' })
  await app.repos.users.setDisabled(user.id, true, new Date())
  const res = await refreshWithBody(app, refreshToken)
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'SESSION_REVOKED')
})

t.test('cookie-mode refresh from a foreign Origin: 403, and the token is not spent', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const { refreshToken } = await login(app)
  const res = await refreshWithCookie(app, refreshToken, { origin: 'https://evil.example' })
  t.equal(res.statusCode, 403)
  t.equal(res.json().code, 'CROSS_SITE_REQUEST')
  t.equal(res.headers['set-cookie'], undefined)
  const ok = await refreshWithCookie(app, refreshToken, { origin: 'http://localhost:3000' })
  t.equal(ok.statusCode, 200)
  t.not(cookieOf(ok)!.value, refreshToken, 'it rotated now, so it was unspent before')
})

t.test('an access token is not a refresh token, and a refresh token is not an access token', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const { accessToken, refreshToken } = await login(app, { transport: 'body' })
  t.equal((await refreshWithBody(app, accessToken)).json().code, 'REFRESH_TOKEN_INVALID')
  const me = await app.inject({ url: '/api/auth/me', headers: bearer(refreshToken) })
  t.equal(me.statusCode, 401)
})
