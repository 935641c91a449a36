/**
 * Several instances behind one load balancer share their limits through one Redis (REDIS_URL):
 * two listening apps on one database file and one real redis-server count guesses and requests
 * together, as one instance would. When Redis goes away, the per-account login throttle fails
 * closed (503 THROTTLE_UNAVAILABLE, no password evaluated) and the per-IP limits fail open; when
 * it comes back, both work again without a restart.
 *
 * References: OWASP Credential Stuffing Prevention Cheat Sheet, NIST SP 800-63B §5.2.2 (rate
 * limiting), RFC 9110 §15.6.4 (503 with Retry-After).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { Writable } from 'node:stream'
import type { Env } from '../../src/config.js'
import { holdVerifications, until } from '../support/app.js'
import { count } from '../support/db.js'
import { redisServer } from '../support/redis.js'
import { call, listen, loginBody, loginFrom, PASSWORD, registerUser, type Answer, type Served } from '../support/server.js'

/** Two instances on one database file (built one after the other: the first one migrates it). */
async function twoInstances (t: Test, env: Env): Promise<[Served, Served]> {
  const dir = mkdtempSync(join(tmpdir(), 'auth-shared-limits-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const shared = { DATABASE_URL: join(dir, 'auth.db'), HOUSEKEEPING_INTERVAL: '0', ...env }
  const a = await listen(t, shared)
  const b = await listen(t, shared)
  return [a, b]
}

const login = async (s: Served, username: string, password: string): Promise<Answer> =>
  await call(s, '/api/auth/login', { json: { username, password, transport: 'body' } })

/**
 * alice's login once the client has reconnected by itself (until then logins answer 503),
 * bounded: after 20 s of 503s the last 503 is returned and the test fails on it.
 */
async function loginOnceReconnected (s: Served): Promise<Answer> {
  for (let i = 0; ; i++) {
    const answer = await login(s, 'alice', PASSWORD)
    if (answer.status !== 503 || i >= 400) return answer
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const sources = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']
const CONCURRENT = 100

t.test('two instances on one Redis share the per-account login throttle: 100 parallel wrong passwords spread over both get exactly the limit evaluated, and then the right password is refused — OWASP Credential Stuffing Prevention, NIST SP 800-63B §5.2.2', async (t) => {
  const redis = await redisServer(t)
  if (redis === null) return
  const max = 5
  const [a, b] = await twoInstances(t, {
    REDIS_URL: redis.url,
    RATE_LIMIT_ENABLED: 'true',
    RATE_LIMIT_LOGIN_MAX: '1000', // the per-address limit is not what stops this attack
    RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: String(max),
    RATE_LIMIT_LOGIN_FAILURES_PER_USER_WINDOW: '15m'
  })
  t.equal((await registerUser(a, 'victim')).status, 201)
  // Every verification on either instance is held after argon2 until all 100 requests are held
  // there or answered: every guess is in flight at once on both.
  const holdA = holdVerifications(a.app)
  const holdB = holdVerifications(b.app)
  let answered = 0
  const guesses = Array.from({ length: CONCURRENT }, async (_, i) => {
    const answer = await loginFrom(i % 2 === 0 ? a : b, sources[i % sources.length]!, 'victim', `wrong guess number ${i}`)
    answered++
    return answer
  })
  await until(() => holdA.held + holdB.held + answered === CONCURRENT)
  t.equal(holdA.held + holdB.held, max, `only ${max} guesses reached a password check, over both instances`)
  holdA.release()
  holdB.release()
  const answers = await Promise.all(guesses)
  const statuses = answers.map((x) => x.status)
  t.equal(statuses.filter((x) => x === 401).length, max, `${max} evaluated: 401`)
  t.equal(statuses.filter((x) => x === 429).length, CONCURRENT - max, 'the rest: 429')
  t.ok(answers.filter((x) => x.status === 429).every((x) => Number(x.retryAfter) > 0), 'every 429 carries Retry-After')
  t.equal((await loginFrom(a, '127.0.0.7', 'victim', PASSWORD)).status, 429, 'afterwards the right password waits on the first instance')
  t.equal((await loginFrom(b, '127.0.0.7', 'victim', PASSWORD)).status, 429, 'and on the second')
})

t.test('two instances on one Redis share the per-IP limits: the global one and a route\'s own', async (t) => {
  const redis = await redisServer(t)
  if (redis === null) return
  const [a, b] = await twoInstances(t, {
    REDIS_URL: redis.url,
    RATE_LIMIT_ENABLED: 'true',
    RATE_LIMIT_MAX: '4',
    RATE_LIMIT_LOGIN_MAX: '3',
    RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: '1000'
  })
  const anyRoute: number[] = []
  for (let i = 0; i < 6; i++) anyRoute.push((await call(i % 2 === 0 ? a : b, '/api/auth/me')).status)
  t.same(anyRoute, [401, 401, 401, 401, 429, 429], 'the global limit counts requests to either instance together')
  const logins: number[] = []
  for (let i = 0; i < 5; i++) logins.push((await login(i % 2 === 0 ? b : a, `user${i}`, 'a wrong password here')).status)
  t.same(logins, [401, 401, 401, 429, 429], 'the login route\'s own limit too')
})

t.test('Redis stopped: login and password change answer 503 THROTTLE_UNAVAILABLE without evaluating the password, per-IP limits stay open; Redis back: both work again without a restart', async (t) => {
  const redis = await redisServer(t)
  if (redis === null) return
  const s = await listen(t, {
    REDIS_URL: redis.url,
    RATE_LIMIT_ENABLED: 'true',
    RATE_LIMIT_MAX: '3',
    RATE_LIMIT_LOGIN_MAX: '1000',
    RATE_LIMIT_REGISTER_MAX: '1000',
    RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: '1000'
  })
  t.equal((await registerUser(s, 'alice')).status, 201)
  const { accessToken } = await loginBody(s, 'alice')
  const failedLogins = async (): Promise<number> => await count(s.app, "SELECT count(*) AS n FROM audit_events WHERE type = 'login_failed'")

  await redis.stop()
  for (const password of [PASSWORD, 'a wrong password for alice']) {
    const answer = await login(s, 'alice', password)
    t.equal(answer.status, 503, 'login: 503')
    t.same(answer.json, { statusCode: 503, code: 'THROTTLE_UNAVAILABLE', message: answer.json?.message }, 'login: the error shape, with its own code')
    t.match(answer.text, /^\{[^\n]*\}$/, 'login: one line of JSON')
    t.ok(Number(answer.headers.get('retry-after')) > 0, 'login: Retry-After')
  }
  t.equal(await failedLogins(), 0, 'no password was evaluated without its count')
  const change = await call(s, '/api/auth/password', {
    method: 'POST',
    headers: { authorization: `Bearer ${accessToken}` },
    json: { currentPassword: 'a wrong guess at it', newPassword: 'a brand new passphrase' }
  })
  t.equal(change.status, 503, 'password change: 503')
  t.equal(change.json?.code, 'THROTTLE_UNAVAILABLE', 'password change: its code')
  const open: number[] = []
  for (let i = 0; i < 6; i++) open.push((await call(s, '/api/auth/me')).status)
  t.same(open, [401, 401, 401, 401, 401, 401], 'per-IP limits fail open: every request passes (to its own refusal, 401 without a token)')

  await redis.start()
  t.equal((await loginOnceReconnected(s)).status, 200, 'Redis back: the right password logs in, without a restart')
  t.equal((await login(s, 'alice', 'a wrong password for alice')).status, 401, 'a wrong one is evaluated (and counted) again')
  t.equal(await failedLogins(), 1)
  const limited: number[] = []
  for (let i = 0; i < 5; i++) limited.push((await call(s, '/api/auth/me')).status)
  t.same(limited, [401, 401, 401, 429, 429], 'per-IP limits count again')
})

t.test('Redis hanging (its process frozen): logins answer 503 within the command timeout instead of waiting, per-IP limits let requests through; the outage is logged, not once per request', async (t) => {
  const redis = await redisServer(t)
  if (redis === null) return
  const lines: Array<{ msg: string }> = []
  const logStream = new Writable({ write (chunk: Buffer, _enc, cb) { for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l)); cb() } })
  const s = await listen(t, {
    REDIS_URL: redis.url,
    LOG_LEVEL: 'warn',
    RATE_LIMIT_ENABLED: 'true',
    RATE_LIMIT_MAX: '3',
    RATE_LIMIT_LOGIN_MAX: '1000',
    RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: '1000'
  }, { logStream })
  t.equal((await registerUser(s, 'alice')).status, 201)

  redis.freeze()
  // Were a command to wait for the frozen server, these would never be answered and the test
  // would time out.
  const requests = 10
  const logins = await Promise.all(Array.from({ length: requests }, async () => await login(s, 'alice', PASSWORD)))
  t.same(logins.map((a) => [a.status, a.json?.code]), Array(requests).fill([503, 'THROTTLE_UNAVAILABLE']), 'every login: 503 THROTTLE_UNAVAILABLE')
  const others = await Promise.all(Array.from({ length: requests }, async () => (await call(s, '/api/auth/me')).status))
  t.same(others, Array(requests).fill(401), 'per-IP limits fail open: none refused as 429')
  const throttleLines = lines.filter((l) => /login throttle unavailable/.test(l.msg)).length
  const limitLines = lines.filter((l) => /per-IP rate limits not counted/.test(l.msg)).length
  t.ok(throttleLines >= 1 && throttleLines < requests, `the throttle's failure logged, not per request (${throttleLines} lines for ${requests} logins)`)
  t.ok(limitLines >= 1 && limitLines < 2 * requests, `the limits' failure logged, not per request (${limitLines} lines for ${2 * requests} requests)`)

  redis.thaw()
  t.equal((await loginOnceReconnected(s)).status, 200, 'Redis answering again: logins work, without a restart')
})
