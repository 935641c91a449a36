/**
 * User enumeration: nothing an unauthenticated client can see tells whether a username exists,
 * except register's 409, which the contract keeps on purpose (a sign-up form has to say that a
 * name is taken; the register limit bounds how fast names can be probed that way).
 *
 * References: OWASP Authentication Cheat Sheet ("Authentication and Error Messages"), OWASP
 * Web Security Testing Guide WSTG-IDNT-04 (Testing for Account Enumeration), OWASP
 * Authorization Cheat Sheet (IDOR). Response timing is measured by bench/timing.ts.
 */
import t from 'tap'
import { call, listen, loginBody, PASSWORD, registerUser, type Answer } from '../support/server.js'
import { sidOf } from '../support/jwt.js'

/** Everything a client sees except what differs per request by design (date, request id). */
function visible (a: Answer): { status: number, body: string, headers: Record<string, string> } {
  const headers: Record<string, string> = {}
  a.headers.forEach((value, name) => { if (!['date', 'x-request-id'].includes(name)) headers[name] = value })
  return { status: a.status, body: a.text, headers }
}

t.test('login: unknown user, wrong password and disabled account get byte-identical answers — OWASP Authentication Cheat Sheet (Authentication and Error Messages), WSTG-IDNT-04', async (t) => {
  const s = await listen(t)
  await registerUser(s, 'alice')
  await registerUser(s, 'mallory')
  const mallory = await s.app.repos.users.findByUsernameKey('mallory')
  await s.app.repos.users.setDisabled(mallory!.id, true, new Date())
  for (const transport of [undefined, 'body']) {
    const attempt = async (username: string, password: string): Promise<Answer> =>
      await call(s, '/api/auth/login', { json: { username, password, ...(transport ? { transport } : {}) } })
    const unknown = visible(await attempt('nobody-here', 'a wrong password here'))
    const wrong = visible(await attempt('alice', 'a wrong password here'))
    const disabled = visible(await attempt('mallory', PASSWORD))
    t.equal(unknown.status, 401)
    t.same(JSON.parse(unknown.body), { statusCode: 401, code: 'INVALID_CREDENTIALS', message: 'Invalid username or password' })
    t.same(wrong, unknown, `${transport ?? 'cookie'} mode: wrong password = unknown user`)
    t.same(disabled, unknown, `${transport ?? 'cookie'} mode: disabled account = unknown user`)
  }
})

t.test('register: 409 for a taken name is the one deliberate signal; every other answer is the same for taken and free names — OWASP Authentication Cheat Sheet, WSTG-IDNT-04', async (t) => {
  const s = await listen(t)
  t.equal((await registerUser(s, 'alice')).status, 201)
  // The documented exception.
  const taken = await registerUser(s, 'Alice')
  t.equal(taken.status, 409)
  t.same(taken.json, { statusCode: 409, code: 'USERNAME_TAKEN', message: 'This username is not available' })
  // Password and format checks come first, so they answer the same whether the name is taken.
  for (const password of ['short', 'password1234', 'x'.repeat(300)]) {
    t.same(visible(await registerUser(s, 'alice', password)), visible(await registerUser(s, 'free-name', password)), `password ${password.slice(0, 12)}`)
  }
  t.same(visible(await call(s, '/api/auth/register', { json: { username: 'alice' } })), visible(await call(s, '/api/auth/register', { json: { username: 'free-name' } })), 'missing password')
})

t.test('register when registration is disabled: 403 for taken and free names alike — WSTG-IDNT-04', async (t) => {
  const s = await listen(t, { ALLOW_REGISTRATION: 'false' })
  await s.app.repos.users.insert({ id: 'u1', username: 'alice', usernameKey: 'alice', passwordHash: 'x', roles: ['user'], now: new Date() })
  t.same(visible(await registerUser(s, 'alice')), visible(await registerUser(s, 'free-name')))
  t.equal((await registerUser(s, 'alice')).status, 403)
})

t.test('refresh and logout: no answer tells a well-formed unknown token from garbage, nor a live token from an unknown one — WSTG-IDNT-04, RFC 9700 §4.14', async (t) => {
  const s = await listen(t)
  await registerUser(s, 'alice')
  const l = await loginBody(s, 'alice')
  const unknown = 'B'.repeat(42) + 'A' // well-formed, canonical base64url, never issued
  t.same(visible(await call(s, '/api/auth/refresh', { json: { refreshToken: unknown } })), visible(await call(s, '/api/auth/refresh', { json: { refreshToken: 'garbage' } })))
  t.same(visible(await call(s, '/api/auth/logout', { json: { refreshToken: unknown } })), visible(await call(s, '/api/auth/logout', { json: { refreshToken: l.refreshToken } })), 'logout: 204 either way')
})

t.test('sessions: ending another user\'s session answers exactly like an id that does not exist — OWASP Authorization Cheat Sheet (IDOR)', async (t) => {
  const s = await listen(t)
  await registerUser(s, 'alice')
  await registerUser(s, 'bob')
  const alice = await loginBody(s, 'alice')
  const bob = await loginBody(s, 'bob')
  const bobSid = sidOf(bob.accessToken)
  const auth = { authorization: `Bearer ${alice.accessToken}` }
  const foreign = await call(s, `/api/auth/sessions/${bobSid}`, { method: 'DELETE', headers: auth })
  const missing = await call(s, '/api/auth/sessions/no-such-session-id-0000', { method: 'DELETE', headers: auth })
  t.equal(foreign.status, 404)
  t.same(visible(foreign), visible(missing))
  // Bob's session is untouched.
  t.equal((await call(s, '/api/auth/refresh', { json: { refreshToken: bob.refreshToken } })).status, 200)
})
