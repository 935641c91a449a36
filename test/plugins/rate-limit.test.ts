import t from 'tap'
import { buildTestApp, login, PASSWORD, register } from '../support/app.js'
import { fakeDate, MINUTE } from '../support/clock.js'

const limited = { RATE_LIMIT_ENABLED: 'true' }

t.test('login is limited per IP: 429 RATE_LIMITED with Retry-After', async (t) => {
  const app = await buildTestApp(t, { ...limited, RATE_LIMIT_LOGIN_MAX: '3', RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: '100' })
  await register(app)
  for (let i = 0; i < 3; i++) t.equal((await login(app, { transport: 'body' })).res.statusCode, 200)
  const { res } = await login(app, { transport: 'body' })
  t.equal(res.statusCode, 429)
  t.match(res.json(), { statusCode: 429, code: 'RATE_LIMITED' })
  t.match(res.headers['retry-after'], /^\d+$/)
  t.ok(Number(res.headers['retry-after']) > 0 && Number(res.headers['retry-after']) <= 60)
})

t.test('failed logins are limited per username across many IPs; the right password is refused while locked', async (t) => {
  const clock = fakeDate(t)
  const app = await buildTestApp(t, { ...limited, TRUST_PROXY: 'true', RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: '5', RATE_LIMIT_LOGIN_FAILURES_PER_USER_WINDOW: '15m' })
  await register(app)
  for (let i = 0; i < 5; i++) {
    const { res } = await login(app, { password: `wrong password ${i}`, headers: { 'x-forwarded-for': `203.0.113.${i}` } })
    t.equal(res.statusCode, 401, `attempt ${i + 1} from its own address`)
  }
  const locked = await login(app, { headers: { 'x-forwarded-for': '198.51.100.7' } })
  t.equal(locked.res.statusCode, 429, 'even the right password, from a fresh address')
  t.equal(locked.res.json().code, 'RATE_LIMITED')
  t.ok(Number(locked.res.headers['retry-after']) > 0)
  t.equal((await login(app, { username: 'ALICE', headers: { 'x-forwarded-for': '198.51.100.8' } })).res.statusCode, 429, 'the username is normalised for the count')

  // Unknown usernames are counted and locked the same way (nothing to learn from the limit).
  for (let i = 0; i < 5; i++) await login(app, { username: 'ghost', password: 'whatever it is', headers: { 'x-forwarded-for': `203.0.113.${50 + i}` } })
  t.equal((await login(app, { username: 'ghost', headers: { 'x-forwarded-for': '198.51.100.9' } })).res.statusCode, 429)

  clock.advance(15 * MINUTE + 1000)
  t.equal((await login(app, { headers: { 'x-forwarded-for': '198.51.100.10' } })).res.statusCode, 200, 'the lock ends with the window')
})

t.test('a successful login resets the failure count', async (t) => {
  const app = await buildTestApp(t, { ...limited, RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: '3' })
  await register(app)
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 2; i++) t.equal((await login(app, { password: 'wrong password!' })).res.statusCode, 401)
    t.equal((await login(app, { password: PASSWORD })).res.statusCode, 200)
  }
})

t.test('register and refresh have their own tighter limits; the global limit covers everything else', async (t) => {
  const app = await buildTestApp(t, { ...limited, RATE_LIMIT_REGISTER_MAX: '2', RATE_LIMIT_REFRESH_MAX: '2', RATE_LIMIT_MAX: '4' })
  t.equal((await register(app, 'user1')).statusCode, 201)
  t.equal((await register(app, 'user2')).statusCode, 201)
  t.equal((await register(app, 'user3')).statusCode, 429)
  for (let i = 0; i < 2; i++) t.equal((await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: 'x' } })).statusCode, 401)
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: 'x' } })).statusCode, 429)
  for (let i = 0; i < 4; i++) t.equal((await app.inject({ url: '/api/auth/me' })).statusCode, 401, 'refused, and counted')
  const over = await app.inject({ url: '/api/auth/me' })
  t.equal(over.statusCode, 429, 'global limit')
  t.equal(over.json().code, 'RATE_LIMITED')
})

t.test('unknown routes are limited too', async (t) => {
  const app = await buildTestApp(t, limited)
  let last = 0
  for (let i = 0; i < 61; i++) last = (await app.inject({ url: `/probe-${i}` })).statusCode
  t.equal(last, 429)
})

t.test('TRUST_PROXY=false (default): X-Forwarded-For is ignored, so it cannot dodge the per-IP limit', async (t) => {
  const app = await buildTestApp(t, { ...limited, RATE_LIMIT_LOGIN_MAX: '2' })
  for (let i = 0; i < 2; i++) await login(app, { username: `nobody${i}`, headers: { 'x-forwarded-for': `203.0.113.${i}` } })
  t.equal((await login(app, { username: 'nobody9', headers: { 'x-forwarded-for': '203.0.113.99' } })).res.statusCode, 429)
})

t.test('TRUST_PROXY=1: the address the proxy appended is the key; a client-written leftmost X-Forwarded-For changes nothing', async (t) => {
  const app = await buildTestApp(t, { ...limited, TRUST_PROXY: '1', RATE_LIMIT_LOGIN_MAX: '2' })
  // The proxy (the socket peer) appends the address it saw; whatever the client wrote comes first.
  const via = (forged: string) => ({ 'x-forwarded-for': `${forged}, 198.51.100.20` })
  for (let i = 0; i < 2; i++) t.equal((await login(app, { username: `nobody${i}`, headers: via(`203.0.113.${i}`) })).res.statusCode, 401)
  const over = await login(app, { username: 'nobody9', headers: via('203.0.113.99') })
  t.equal(over.res.statusCode, 429, 'a new forged entry does not make a new key')
  // Another real client behind the same proxy has its own count.
  t.equal((await login(app, { username: 'nobody8', headers: { 'x-forwarded-for': '198.51.100.21' } })).res.statusCode, 401)
})
