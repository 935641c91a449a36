import t from 'tap'
import { bearer, buildTestApp, login, register } from '../support/app.js'
import { fakeDate, MINUTE } from '../support/clock.js'

t.test('200 with the account', async (t) => {
  const app = await buildTestApp(t)
  const user = (await register(app)).json()
  const { accessToken } = await login(app)
  const res = await app.inject({ url: '/api/auth/me', headers: bearer(accessToken) })
  t.equal(res.statusCode, 200)
  t.same(res.json(), user)
  t.equal(res.headers['cache-control'], 'no-store')
})

t.test('401 with WWW-Authenticate for a missing, malformed or expired token', async (t) => {
  const clock = fakeDate(t)
  const app = await buildTestApp(t)
  await register(app)
  const { accessToken } = await login(app)
  const cases: Array<[string, Record<string, string>, string, RegExp]> = [
    ['missing', {}, 'AUTHORIZATION_REQUIRED', /^Bearer realm="auth"$/],
    ['basic scheme', { authorization: 'Basic YWxpY2U6cHc=' }, 'ACCESS_TOKEN_INVALID', /error="invalid_token"/],
    ['bearer alone', { authorization: 'Bearer' }, 'ACCESS_TOKEN_INVALID', /error="invalid_token"/],
    ['not a jwt', { authorization: 'Bearer abc' }, 'ACCESS_TOKEN_INVALID', /error="invalid_token"/],
    ['garbage jwt', { authorization: 'Bearer a.b.c' }, 'ACCESS_TOKEN_INVALID', /error="invalid_token"/],
    ['tampered', bearer(accessToken.slice(0, -4) + (accessToken.endsWith('AAAA') ? 'BBBB' : 'AAAA')), 'ACCESS_TOKEN_INVALID', /error="invalid_token"/]
  ]
  for (const [name, headers, code, challenge] of cases) {
    const res = await app.inject({ url: '/api/auth/me', headers })
    t.equal(res.statusCode, 401, name)
    t.equal(res.json().code, code, name)
    t.match(res.headers['www-authenticate'], challenge, name)
  }
  clock.advance(16 * MINUTE)
  const expired = await app.inject({ url: '/api/auth/me', headers: bearer(accessToken) })
  t.equal(expired.statusCode, 401)
  t.equal(expired.json().code, 'ACCESS_TOKEN_EXPIRED')
  t.match(expired.headers['www-authenticate'], /error="invalid_token", error_description="The access token expired"/)
})

t.test('issuer and audience are pinned: a token for another audience is refused', async (t) => {
  const dir = t.testdir()
  const db = `file:${dir}/auth.db`
  const a = await buildTestApp(t, { DATABASE_URL: db })
  await register(a)
  const { accessToken } = await login(a)
  await a.close()
  const otherAudience = await buildTestApp(t, { DATABASE_URL: db, JWT_AUDIENCE: 'https://api.other.example' })
  t.equal((await otherAudience.inject({ url: '/api/auth/me', headers: bearer(accessToken) })).statusCode, 401)
  await otherAudience.close()
  const otherIssuer = await buildTestApp(t, { DATABASE_URL: db, JWT_ISSUER: 'https://issuer.other.example' })
  t.equal((await otherIssuer.inject({ url: '/api/auth/me', headers: bearer(accessToken) })).statusCode, 401)
  await otherIssuer.close()
  const same = await buildTestApp(t, { DATABASE_URL: db })
  t.equal((await same.inject({ url: '/api/auth/me', headers: bearer(accessToken) })).statusCode, 200, 'same settings: accepted (same key, restored)')
})

t.test('a token signed by another service\'s key (unknown kid) is refused', async (t) => {
  const a = await buildTestApp(t)
  const b = await buildTestApp(t)
  await register(a)
  const { accessToken } = await login(a)
  const res = await b.inject({ url: '/api/auth/me', headers: bearer(accessToken) })
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'ACCESS_TOKEN_INVALID')
})
