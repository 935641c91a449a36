import t from 'tap'
import { bearer, buildTestApp, login, PASSWORD, refreshWithBody, register } from '../helper.js'

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
