/**
 * Access-token signatures are checked on libuv's thread pool, where argon2 also runs. A burst
 * of logins must not make every authenticated request wait behind it: the password hasher
 * hands the pool at most all its threads but one, so a token check always finds a free thread.
 * Uses the production argon2 cost (each login holds a thread for tens of ms) and tells the
 * service the pool size this process really has.
 */
import t from 'tap'
import { buildTestApp, login, PASSWORD, register, until } from '../support/app.js'

const POOL = Number(process.env.UV_THREADPOOL_SIZE ?? 4)

t.test('a /me during a burst of logins is answered before the burst has drained', { skip: POOL < 2 ? 'needs a thread pool of at least 2' : false }, async (t) => {
  const logins = 6 * POOL
  // Each login in flight holds one of the account's attempts until it is answered (a password
  // is counted before it is checked): the per-account limit must allow the whole burst at once.
  const app = await buildTestApp(t, { ARGON2_MEMORY_KIB: '19456', ARGON2_TIME_COST: '2', UV_THREADPOOL_SIZE: String(POOL), RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: String(logins) })
  t.equal(app.passwords.concurrency, POOL - 1, 'one pool thread is kept free of argon2')
  t.equal((await register(app)).statusCode, 201)
  const { accessToken } = await login(app)

  let finished = 0
  const burst = Array.from({ length: logins }, async () => {
    const res = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'alice', password: PASSWORD, transport: 'body' } })
    finished++
    return res.statusCode
  })
  // Let every login reach the hasher before the token check is asked for (each first looks
  // its account up, which on PostgreSQL is a round trip): all but those hashing are queued.
  await until(() => finished > 0 || app.passwords.waiting >= logins - app.passwords.concurrency)
  t.ok(app.passwords.waiting > 0, 'logins are queued')
  const me = await app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: `Bearer ${accessToken}` } })
  const finishedBeforeMe = finished
  t.equal(me.statusCode, 200)
  t.ok(finishedBeforeMe < logins / 2, `/me answered after ${finishedBeforeMe} of ${logins} logins (behind the whole queue it would be after most of them)`)
  t.same(new Set(await Promise.all(burst)), new Set([200]))
})
