import t from 'tap'
import { buildTestApp, cookieOf, login, PASSWORD, register } from '../support/app.js'
import { count, rows } from '../support/db.js'
import { decodeJwt } from '../support/jwt.js'

t.test('cookie mode (default): access token in the body, refresh token only in the cookie', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const { res } = await login(app)
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.same(Object.keys(body).sort(), ['accessToken', 'expiresIn', 'tokenType'])
  t.equal(body.tokenType, 'Bearer')
  t.equal(body.expiresIn, 900)
  t.equal(res.headers['cache-control'], 'no-store')

  const setCookie = String(res.headers['set-cookie'])
  const value = cookieOf(res)!.value
  t.match(value, /^[A-Za-z0-9_-]{64}$/, 'opaque token (encrypted selector and 256-bit secret), base64url')
  t.equal(setCookie, `refresh_token=${value}; Max-Age=604800; Path=/api/auth; HttpOnly; Secure; SameSite=Strict`)
})

t.test('body mode: "transport": "body" returns refreshToken and sets no cookie', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const { res, refreshToken } = await login(app, { transport: 'body' })
  t.equal(res.statusCode, 200)
  t.match(refreshToken, /^[A-Za-z0-9_-]{64}$/)
  t.equal(res.headers['set-cookie'], undefined)
  t.equal(res.headers['cache-control'], 'no-store')
})

t.test('REFRESH_TRANSPORT_DEFAULT=body: a login that names no transport is in body mode', async (t) => {
  const app = await buildTestApp(t, { REFRESH_TRANSPORT_DEFAULT: 'body' })
  await register(app)
  const { res } = await login(app)
  t.type(res.json().refreshToken, 'string')
  t.equal(res.headers['set-cookie'], undefined)
  const explicit = await login(app, { transport: 'cookie' })
  t.equal(explicit.res.json().refreshToken, undefined)
  t.ok(cookieOf(explicit.res))
})

t.test('cookie name and SameSite are configurable', async (t) => {
  const app = await buildTestApp(t, { REFRESH_COOKIE_NAME: '__Host-rt', REFRESH_COOKIE_SAMESITE: 'lax' })
  await register(app)
  const { res } = await login(app)
  t.match(String(res.headers['set-cookie']), /^__Host-rt=[A-Za-z0-9_-]{64}; Max-Age=604800; Path=\/api\/auth; HttpOnly; Secure; SameSite=Lax$/)
})

t.test('the access token: ES256, kid, typ at+jwt, and the contract claims', async (t) => {
  const app = await buildTestApp(t)
  const user = (await register(app)).json()
  const { accessToken, res } = await login(app)
  const { header, payload } = decodeJwt(accessToken)
  t.same(header, { alg: 'ES256', typ: 'at+jwt', kid: app.keyRing.signingKey(new Date()).kid })
  t.same(Object.keys(payload).sort(), ['amr', 'aud', 'auth_time', 'exp', 'iat', 'iss', 'jti', 'roles', 'sid', 'sub'])
  t.same(payload.amr, ['pwd'])
  t.equal(payload.auth_time, payload.iat)
  t.match(payload, { iss: 'http://localhost:3000', aud: 'http://localhost:3000', sub: user.id, roles: ['user'] })
  t.equal((payload.exp as number) - (payload.iat as number), 900)
  t.equal(res.json().expiresIn, 900)
  t.type(payload.jti, 'string')
  const sessions = await rows<{ id: string }>(app, 'SELECT id FROM sessions')
  t.same(sessions.map((s) => s.id), [payload.sid], 'sid names the session created by the login')
})

t.test('usernames log in case-insensitively and after NFKC normalisation', async (t) => {
  const app = await buildTestApp(t)
  await register(app, 'Alice')
  t.equal((await login(app, { username: 'ALICE' })).res.statusCode, 200)
  t.equal((await login(app, { username: ' ａｌｉｃｅ ' })).res.statusCode, 200)
})

t.test('one identical 401 for an unknown user, a wrong password and a disabled user', async (t) => {
  const app = await buildTestApp(t)
  const alice = (await register(app)).json()
  await register(app, 'bob')
  await app.repos.users.setDisabled(alice.id, true, new Date())
  const responses = await Promise.all([
    login(app, { username: 'nobody-here' }),
    login(app, { username: 'bob', password: 'wrong password here' }),
    login(app, { username: 'alice' })
  ])
  for (const { res } of responses) {
    t.equal(res.statusCode, 401)
    t.same(res.json(), { statusCode: 401, code: 'INVALID_CREDENTIALS', message: 'Invalid username or password' })
    t.equal(res.headers['set-cookie'], undefined)
  }
  const headerNames = responses.map(({ res }) => Object.keys(res.headers).filter((h) => h !== 'date' && h !== 'x-request-id').sort())
  t.same(headerNames[0], headerNames[1])
  t.same(headerNames[1], headerNames[2])
  t.equal(await count(app, 'SELECT count(*) AS n FROM sessions'), 0, 'no session was created')
})

t.test('an unknown username still costs one argon2 verification (against a dummy hash)', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const calls = { dummy: 0, real: 0 }
  const { verify, verifyDummy } = app.passwords
  app.passwords.verify = async (...args) => { calls.real++; return await verify(...args) }
  app.passwords.verifyDummy = async (...args) => { calls.dummy++; return await verifyDummy(...args) }
  await login(app, { username: 'nobody-here' })
  t.same(calls, { dummy: 1, real: 0 })
  await login(app, { username: 'alice', password: 'wrong password here' })
  t.same(calls, { dummy: 1, real: 1 })
})

t.test('the stored hash is upgraded on login when the configured parameters got stronger', async (t) => {
  const dir = t.testdir()
  const db = `file:${dir}/auth.db`
  const weak = await buildTestApp(t, { DATABASE_URL: db, ARGON2_MEMORY_KIB: '1024', ARGON2_TIME_COST: '1' })
  await register(weak)
  await weak.close()
  const strong = await buildTestApp(t, { DATABASE_URL: db, ARGON2_MEMORY_KIB: '2048', ARGON2_TIME_COST: '2' })
  const hashOf = () => (strong.sqlite.prepare('SELECT password_hash AS h FROM users').get() as { h: string }).h
  t.match(hashOf(), /m=1024,t=1,p=1/)
  t.equal((await login(strong, { password: 'wrong password here' })).res.statusCode, 401)
  t.match(hashOf(), /m=1024,t=1,p=1/, 'a failed login changes nothing')
  t.equal((await login(strong)).res.statusCode, 200)
  t.match(hashOf(), /^\$argon2id\$v=19\$m=2048,t=2,p=1\$/)
  t.equal((await login(strong)).res.statusCode, 200, 'the new hash verifies')
})

t.test('cookie mode refuses a foreign Origin with 403 before anything changes; body mode does not use the cookie', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: 'https://app.example.com' })
  await register(app)
  const foreign = await login(app, { headers: { origin: 'https://evil.example' } })
  t.equal(foreign.res.statusCode, 403)
  t.equal(foreign.res.json().code, 'CROSS_SITE_REQUEST')
  t.equal(foreign.res.headers['set-cookie'], undefined)
  t.equal(await count(app, 'SELECT count(*) AS n FROM sessions'), 0)
  t.equal((await login(app, { headers: { origin: 'http://localhost:3000' } })).res.statusCode, 200, 'PUBLIC_URL origin')
  t.equal((await login(app, { headers: { origin: 'https://app.example.com' } })).res.statusCode, 200, 'a CORS_ORIGINS origin')
  t.equal((await login(app, { transport: 'body', headers: { origin: 'https://evil.example' } })).res.statusCode, 200, 'body mode')
})

t.test('bad bodies are 400 and never reach the password check', async (t) => {
  const app = await buildTestApp(t)
  let verifications = 0
  const { verifyDummy } = app.passwords
  app.passwords.verifyDummy = async (p) => { verifications++; return await verifyDummy(p) }
  for (const payload of [{}, { username: 'a' }, { username: 'alice', password: 'x'.repeat(257) }, { username: 'alice', password: PASSWORD, transport: 'smoke-signals' }]) {
    const res = await app.inject({ method: 'POST', url: '/api/auth/login', payload })
    t.equal(res.statusCode, 400, JSON.stringify(payload).slice(0, 60))
    t.equal(res.json().code, 'VALIDATION_FAILED')
  }
  t.equal(verifications, 0)
})

t.test('login finds the account by its case-folded name: ß/SS, final sigma', async (t) => {
  const app = await buildTestApp(t)
  t.equal((await register(app, 'Straße')).statusCode, 201)
  t.equal((await register(app, 'ΚΟΣΜΟΣ')).statusCode, 201)
  for (const username of ['Straße', 'STRASSE', 'strasse', 'ΚΟΣΜΟΣ', 'κοσμος', 'κοσμοσ']) {
    t.equal((await login(app, { username })).res.statusCode, 200, username)
  }
})
