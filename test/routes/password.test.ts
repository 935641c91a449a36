import t from 'tap'
import { bearer, buildTestApp, login, PASSWORD, refreshWithBody, register } from '../support/app.js'

const NEW = 'a completely new passphrase'

t.test('204; the password changes; every other session ends, the current one stays', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const current = await login(app, { transport: 'body' })
  const other = await login(app, { transport: 'body' })
  const res = await app.inject({ method: 'POST', url: '/api/auth/password', headers: bearer(current.accessToken), payload: { currentPassword: PASSWORD, newPassword: NEW } })
  t.equal(res.statusCode, 204)
  t.equal((await refreshWithBody(app, other.refreshToken)).statusCode, 401, 'other session ended')
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(other.accessToken) })).statusCode, 401)
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(current.accessToken) })).statusCode, 200, 'current session stays')
  t.equal((await refreshWithBody(app, current.refreshToken)).statusCode, 200)
  t.equal((await login(app)).res.statusCode, 401, 'old password refused')
  t.equal((await login(app, { password: NEW })).res.statusCode, 200, 'new password works')
})

t.test('403 for a wrong current password; 400 for a weak new one; 401 without a token', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const { accessToken } = await login(app)
  const wrong = await app.inject({ method: 'POST', url: '/api/auth/password', headers: bearer(accessToken), payload: { currentPassword: 'not the password', newPassword: NEW } })
  t.equal(wrong.statusCode, 403)
  t.equal(wrong.json().code, 'INVALID_CURRENT_PASSWORD')
  const weak = await app.inject({ method: 'POST', url: '/api/auth/password', headers: bearer(accessToken), payload: { currentPassword: PASSWORD, newPassword: 'short' } })
  t.equal(weak.statusCode, 400)
  t.equal(weak.json().code, 'WEAK_PASSWORD')
  const invalid = await app.inject({ method: 'POST', url: '/api/auth/password', headers: bearer(accessToken), payload: { newPassword: NEW } })
  t.equal(invalid.statusCode, 400)
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/password', payload: { currentPassword: PASSWORD, newPassword: NEW } })).statusCode, 401)
  t.equal((await login(app)).res.statusCode, 200, 'nothing changed')
})

t.test('guessing the current password with a stolen access token: failures count in the per-account login limit; past it 429, and the guessing session ends', async (t) => {
  const max = 10
  const app = await buildTestApp(t, { RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: String(max) })
  await register(app)
  const stolen = await login(app, { transport: 'body' })
  const owners = await login(app, { transport: 'body' })
  const change = async (currentPassword: string) => await app.inject({
    method: 'POST', url: '/api/auth/password', headers: bearer(stolen.accessToken), payload: { currentPassword, newPassword: NEW }
  })
  const answers = []
  for (let i = 0; i < 30; i++) answers.push(await change(`wrong guess number ${i}`))
  t.same(answers.slice(0, max).map((r) => r.statusCode), Array(max).fill(403), `the first ${max} guesses: 403`)
  const limited = answers[max]!
  t.equal(limited.statusCode, 429, 'past the limit: 429')
  t.equal(limited.json().code, 'RATE_LIMITED')
  t.ok(Number(limited.headers['retry-after']) > 0, 'with Retry-After')
  t.same(answers.slice(max + 1).map((r) => r.statusCode), Array(30 - max - 1).fill(401), 'then the session has ended: 401')
  const right = await change(PASSWORD)
  t.not(right.statusCode, 204, 'the right password after 30 wrong ones changes nothing')
  t.equal(right.statusCode, 401)
  t.equal((await refreshWithBody(app, stolen.refreshToken)).statusCode, 401, "the guessing session's refresh token is refused")
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(stolen.accessToken) })).statusCode, 401, 'and its access token')
  t.equal((await login(app)).res.statusCode, 429, 'the guesses count against logins to the account too')
  t.equal((await refreshWithBody(app, owners.refreshToken)).statusCode, 200, 'other sessions go on')
})

t.test('a successful password change clears the failures its own wrong guesses counted', async (t) => {
  const app = await buildTestApp(t, { RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: '3' })
  await register(app)
  const current = await login(app, { transport: 'body' })
  const change = async (currentPassword: string, newPassword: string) => await app.inject({
    method: 'POST', url: '/api/auth/password', headers: bearer(current.accessToken), payload: { currentPassword, newPassword }
  })
  t.equal((await change('a typo in the password', NEW)).statusCode, 403)
  t.equal((await change('another typo in it', NEW)).statusCode, 403)
  t.equal((await change(PASSWORD, NEW)).statusCode, 204)
  t.equal((await change('a typo in the new one', PASSWORD)).statusCode, 403)
  t.equal((await change('and one more typo', PASSWORD)).statusCode, 403)
  t.equal((await login(app, { password: NEW })).res.statusCode, 200, 'two failures after the success: still under the limit of 3')
})
