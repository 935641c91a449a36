import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import t from 'tap'
import { buildTestApp, login, refreshWithBody, register, testConfig } from '../support/app.js'
import { DAY, fakeDate, HOUR, SECOND } from '../support/clock.js'
import { rows, run, count as countRows, sharedDatabaseUrl } from '../support/db.js'
import { metric, scrape } from '../support/metrics.js'

/** On the backend of the test pass: rows are inserted and counted through test/support/db.ts. */
type App = Awaited<ReturnType<typeof buildTestApp>>

/** The rows of `table`, once the audit events recorded so far are written (on PostgreSQL, after the answer). */
async function count (app: App, table: string): Promise<number> {
  await app.audit.settled()
  return await countRows(app, `SELECT count(*) FROM ${table}`)
}

/** The counts below start from an empty audit log (a fresh database records its first key at boot). */
async function emptyAuditLog (app: App): Promise<void> {
  await app.audit.settled()
  await run(app, 'DELETE FROM audit_events')
}

const insertOldEvent = async (app: App, at: number): Promise<void> => {
  await run(app, "INSERT INTO audit_events (at, type) VALUES (?, 'login_failed')", new Date(at))
}

t.test('prunes expired refresh tokens, sessions ended before SESSION_RETENTION and audit events past AUDIT_RETENTION; keeps the rest', async (t) => {
  const clock = fakeDate(t)
  const app = await buildTestApp(t, {
    REFRESH_TOKEN_TTL: '1d', SESSION_MAX_AGE: '30d', SESSION_RETENTION: '7d', AUDIT_RETENTION: '20d', HOUSEKEEPING_INTERVAL: '0'
  })
  await emptyAuditLog(app)
  // Day 0: register; a session that idles out on day 1; a session logged out at once.
  await register(app)
  const idle = await login(app, { transport: 'body' })
  const loggedOut = await login(app, { transport: 'body' })
  await app.inject({ method: 'POST', url: '/api/auth/logout', payload: { refreshToken: loggedOut.refreshToken } })
  // Day 15: a session logged out (within SESSION_RETENTION of the pass below).
  clock.advance(15 * DAY)
  const recent = await login(app, { transport: 'body' })
  await app.inject({ method: 'POST', url: '/api/auth/logout', payload: { refreshToken: recent.refreshToken } })
  // Day 21.5: a live session, refreshed once.
  clock.advance(6 * DAY + 12 * HOUR)
  const live = await login(app, { transport: 'body' })
  const rotated = await refreshWithBody(app, live.refreshToken)

  t.equal(await count(app, 'sessions'), 4)
  const auditBefore = await count(app, 'audit_events')
  const result = await app.housekeeping.run()
  t.ok(result)
  t.equal(result!.sessions, 2, 'the one that idled out on day 1 and the one logged out on day 0')
  t.equal(result!.refreshTokens, 3, 'the tokens past their expiry (days 1, 1 and 16)')
  t.equal(result!.auditEvents, 4, 'register, two logins and a logout of day 0')
  t.equal(await count(app, 'audit_events'), auditBefore - 4)
  t.equal(await count(app, 'sessions'), 2, 'the live session and the one that ended within SESSION_RETENTION')
  t.equal((await refreshWithBody(app, idle.refreshToken)).statusCode, 401)
  t.equal((await refreshWithBody(app, rotated.json().refreshToken)).statusCode, 200, 'the live session goes on')

  const text = await scrape(app)
  t.equal(metric(text, 'auth_housekeeping_deleted_total', { kind: 'sessions' }), 2)
  t.equal(metric(text, 'auth_housekeeping_deleted_total', { kind: 'refresh_tokens' }), 3)
  t.equal(metric(text, 'auth_housekeeping_deleted_total', { kind: 'audit_events' }), 4)
})

t.test('a live session and its current token are never touched', async (t) => {
  const clock = fakeDate(t)
  const app = await buildTestApp(t, { SESSION_RETENTION: '0', HOUSEKEEPING_INTERVAL: '0', REFRESH_REUSE_INTERVAL: '0' })
  await register(app)
  const session = await login(app, { transport: 'body' })
  const next = await refreshWithBody(app, session.refreshToken)
  clock.advance(HOUR)
  await app.housekeeping.run()
  t.equal(await count(app, 'sessions'), 1)
  t.equal((await refreshWithBody(app, next.json().refreshToken)).statusCode, 200, 'still rotates')
  t.equal((await refreshWithBody(app, session.refreshToken)).statusCode, 401, 'a spent token is still recognised as reuse')
})

t.test('deletes in batches of HOUSEKEEPING_BATCH_SIZE, yielding to requests in between, until everything old is gone', async (t) => {
  const app = await buildTestApp(t, { HOUSEKEEPING_BATCH_SIZE: '3', AUDIT_RETENTION: '1d', HOUSEKEEPING_INTERVAL: '0' })
  await emptyAuditLog(app)
  for (let i = 0; i < 10; i++) await insertOldEvent(app, Date.now() - 2 * DAY)
  await insertOldEvent(app, Date.now())
  const pruning = app.repos.audit.pruneBefore(new Date(Date.now() - DAY), 3)
  if (app.database.kind === 'sqlite') {
    // better-sqlite3 runs each DELETE synchronously: the purge itself must hand the event loop
    // back between batches. (On PostgreSQL every batch is a round trip that does so anyway.)
    t.equal(await count(app, 'audit_events'), 8, 'one batch of three, then the event loop is free')
  }
  t.equal((await app.inject({ url: '/health' })).statusCode, 200, 'a request is served mid-purge')
  t.equal(await pruning, 10)
  t.equal(await count(app, 'audit_events'), 1, 'the recent event stays')

  for (let i = 0; i < 7; i++) await insertOldEvent(app, Date.now() - 2 * DAY)
  const result = await app.housekeeping.run()
  t.equal(result!.auditEvents, 7, 'the scheduled pass uses the configured batch size and finishes')
  t.equal(await count(app, 'audit_events'), 1)
})

t.test('refresh tokens are found by walking ids from the oldest: every expired one below the TTL cutoff goes, and the walk stops there', async (t) => {
  const app = await buildTestApp(t)
  const now = Date.now()
  const insert = async (sessionId: string, createdAt: number, expiresAt: number): Promise<void> => {
    await run(app, 'INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES (?, ?, ?, ?)',
      randomBytes(32), sessionId, new Date(createdAt), new Date(expiresAt))
  }
  const ttl = 7 * DAY
  // Oldest first, as rows are appended: 25 expired long ago, one issued under a longer TTL and
  // still valid, 25 more expired (ids 1-51); then rows issued within the TTL: 15 valid ones,
  // one that expired early (its session's absolute end came first), 25 valid ones.
  for (let i = 0; i < 25; i++) await insert('s', now - 30 * DAY, now - 23 * DAY)
  await insert('long', now - 20 * DAY, now + DAY)
  for (let i = 0; i < 25; i++) await insert('s', now - 10 * DAY, now - 3 * DAY)
  for (let i = 0; i < 15; i++) await insert('live', now - 2 * HOUR, now + ttl)
  await insert('capped', now - HOUR, now - 1000)
  for (let i = 0; i < 25; i++) await insert('live', now - HOUR, now + ttl)

  const result = await app.repos.sessions.pruneExpired(new Date(now), new Date(now - 30 * DAY), 10, new Date(now - ttl))
  t.equal(result.tokens, 50, 'the 50 that expired before the cutoff')
  const left = await rows(app, 'SELECT session_id, count(*) AS n FROM refresh_tokens GROUP BY session_id ORDER BY session_id')
  t.same(left, [{ session_id: 'capped', n: 1 }, { session_id: 'live', n: 40 }, { session_id: 'long', n: 1 }],
    'the one still valid stays; the one that expired early, beyond the batch where the walk stopped, waits for a later pass (refused meanwhile like any expired token)')

  // Batches of 10: the walk stopped with the batch of ids 51-60, the first to reach a token
  // issued after the cutoff. A later pass, once the early one is older than the cutoff too:
  const later = await app.repos.sessions.pruneExpired(new Date(now + 12 * HOUR), new Date(now - 30 * DAY), 10, new Date(now))
  t.equal(later.tokens, 1, 'the early one goes')
  t.equal(await count(app, 'refresh_tokens'), 41)
})

t.test('runs on its own every HOUSEKEEPING_INTERVAL', async (t) => {
  const app = await buildTestApp(t, { HOUSEKEEPING_INTERVAL: '1s', AUDIT_RETENTION: '1d' })
  await emptyAuditLog(app)
  await insertOldEvent(app, Date.now() - 2 * DAY)
  t.equal(await count(app, 'audit_events'), 1)
  for (let i = 0; i < 60 && await count(app, 'audit_events') > 0; i++) await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(await count(app, 'audit_events'), 0, 'pruned by the schedule')
})

t.test('with several instances on one database, one pass per interval (a lease)', async (t) => {
  const env = { DATABASE_URL: await sharedDatabaseUrl(t), HOUSEKEEPING_INTERVAL: '1h' }
  const a = await buildTestApp(t, env)
  const b = await buildTestApp(t, env)
  const now = new Date()
  t.ok(await a.housekeeping.run(now), 'the first instance runs')
  t.equal(await b.housekeeping.run(now), null, 'the second sees the lease and skips')
  t.ok(await a.housekeeping.run(new Date(now.getTime() + 10 * SECOND)), 'the holder may run again')
  t.ok(await b.housekeeping.run(new Date(now.getTime() + 2 * HOUR)), 'once the lease has run out, anyone may')
})

t.test('settings: defaults and validation', async (t) => {
  t.same(testConfig().housekeeping, { interval: 3600, batchSize: 1000, sessionRetention: 7 * 86400, auditRetention: 90 * 86400 })
  t.same(testConfig({ AUDIT_RETENTION: '30d', HOUSEKEEPING_INTERVAL: '0', SESSION_RETENTION: '0' }).housekeeping.auditRetention, 30 * 86400)
  t.throws(() => testConfig({ AUDIT_RETENTION: '0' }), /^AUDIT_RETENTION: '0' is not allowed; use a duration of at least 1s/)
  t.throws(() => testConfig({ HOUSEKEEPING_BATCH_SIZE: '0' }), /^HOUSEKEEPING_BATCH_SIZE: '0' is not allowed; use an integer from 1 to 100000$/)
  t.throws(() => testConfig({ AUDIT_RETENTION: 'forever' }), /AUDIT_RETENTION/)
})

t.test('a large forward jump of the wall clock does not prune beyond the time that really passed', async (t) => {
  const clock = fakeDate(t)
  const lines: string[] = []
  const logStream = new Writable({ write (chunk, _enc, cb) { lines.push(String(chunk)); cb() } })
  const app = await buildTestApp(t, {
    REFRESH_TOKEN_TTL: '1d', SESSION_MAX_AGE: '30d', SESSION_RETENTION: '0', HOUSEKEEPING_INTERVAL: '0', LOG_LEVEL: 'warn'
  }, { logStream })
  await register(app)
  const session = await login(app, { transport: 'body' })
  t.ok(await app.housekeeping.run(), 'a pass at the right time')

  // The wall clock jumps a year ahead between two passes (a bad NTP answer, a restored VM).
  clock.advance(365 * DAY)
  const jumped = await app.housekeeping.run()
  t.ok(jumped, 'the pass runs')
  t.equal(jumped!.sessions, 0, 'no session is deleted')
  t.equal(jumped!.refreshTokens, 0, 'no refresh token is deleted')
  t.equal(await count(app, 'sessions'), 1)
  const warning = lines.map((l) => JSON.parse(l)).find((l) => /wall clock/.test(String(l.msg)))
  t.ok(warning, 'a warning says why')
  t.equal((await app.housekeeping.run())!.sessions, 0, 'nor on the pass after')

  // The clock is put right: the session goes on.
  clock.advance(-365 * DAY)
  t.equal((await refreshWithBody(app, session.refreshToken)).statusCode, 200)
})
