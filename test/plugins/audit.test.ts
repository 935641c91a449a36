import { Writable } from 'node:stream'
import t from 'tap'
import { bearer, buildTestApp, login, PASSWORD, refreshWithBody, register } from '../support/app.js'
import { fakeDate, SECOND } from '../support/clock.js'
import { adminSession } from '../support/metrics.js'
import { sidOf } from '../support/jwt.js'
import { column, count, rows, run, sharedDatabaseUrl } from '../support/db.js'
import { startSmtpSink } from '../support/smtp.js'

/**
 * On the backend of the test pass. The rows are read through test/support/db.ts; on PostgreSQL
 * an event recorded on its own commit is written after the answer, so a test waits for
 * `app.audit.settled()` before it reads them (and between requests where their order matters).
 */

const NEW_PASSWORD = 'a completely new passphrase'
const UA = 'audit-test/1.0'

interface Row {
  id: number
  at: number
  type: string
  user_id: string | null
  session_id: string | null
  ip: string | null
  user_agent: string | null
  request_id: string | null
  detail: string | null
}

t.test('the security events of a user\'s life are recorded with time, user, session, ip, user agent and request id', async (t) => {
  const clock = fakeDate(t)
  const app = await buildTestApp(t, { REFRESH_REUSE_INTERVAL: '5s' })
  const headers = { 'user-agent': UA }
  // Each event is written before the next request: the ids then follow the order of events.
  const settled = async <T>(answer: T): Promise<T> => { await app.audit.settled(); return answer }
  const reg = await settled(await app.inject({ method: 'POST', url: '/api/auth/register', headers, payload: { username: 'alice', password: PASSWORD } }))
  const userId = reg.json().id as string
  await settled(await login(app, { password: 'wrong password here', headers }))
  await settled(await login(app, { username: 'nobody', headers }))
  const first = await settled(await login(app, { transport: 'body', headers }))
  const firstSid = sidOf(first.accessToken)
  const refresh = async (refreshToken: string) => await settled(await app.inject({ method: 'POST', url: '/api/auth/refresh', headers, payload: { refreshToken } }))
  t.equal((await refresh(first.refreshToken)).statusCode, 200)
  clock.advance(30 * SECOND)
  t.equal((await refresh(first.refreshToken)).statusCode, 401, 'late reuse')
  const second = await settled(await login(app, { transport: 'body', headers }))
  await settled(await app.inject({ method: 'POST', url: '/api/auth/logout', headers, payload: { refreshToken: second.refreshToken } }))
  const third = await settled(await login(app, { transport: 'body', headers }))
  const fourth = await settled(await login(app, { transport: 'body', headers }))
  const fourthSid = sidOf(fourth.accessToken)
  await settled(await app.inject({ method: 'DELETE', url: `/api/auth/sessions/${fourthSid}`, headers: { ...headers, ...bearer(third.accessToken) } }))
  const pw = await settled(await app.inject({ method: 'POST', url: '/api/auth/password', headers: { ...headers, ...bearer(third.accessToken) }, payload: { currentPassword: PASSWORD, newPassword: NEW_PASSWORD } }))
  t.equal(pw.statusCode, 204)
  const all = await settled(await app.inject({ method: 'POST', url: '/api/auth/logout-all', headers: { ...headers, ...bearer(third.accessToken) } }))
  t.equal(all.statusCode, 204)

  // Key-ring events of the boot (key_rotated) have no request; this test is about requests.
  const events = await rows<Row>(app, "SELECT * FROM audit_events WHERE type != 'key_rotated' ORDER BY id")
  t.same(events.map((r) => r.type), [
    'register',
    'login_failed', 'login_failed',
    'login_succeeded',
    'refresh_reuse_detected',
    'login_succeeded', 'logout',
    'login_succeeded', 'login_succeeded', 'session_revoked',
    'password_changed',
    'logout_all'
  ])
  for (const r of events) {
    t.equal(r.ip, '127.0.0.1', `${r.type}: ip`)
    t.equal(r.user_agent, UA, `${r.type}: user agent`)
    t.match(r.request_id, /^[0-9a-f-]{36}$/, `${r.type}: request id`)
    t.ok(r.at > 0)
  }
  t.equal(events[0]!.request_id, reg.headers['x-request-id'], 'the request id is the one sent back to the client')
  t.equal(events[0]!.user_id, userId)
  t.same(JSON.parse(events[0]!.detail!), { username: 'alice' })
  t.same(JSON.parse(events[1]!.detail!), { reason: 'wrong_password' })
  t.equal(events[1]!.user_id, userId, 'a failed login for a known user names the user')
  t.same(JSON.parse(events[2]!.detail!), { reason: 'unknown_user' }, 'the name tried for an unknown user is not kept')
  t.equal(events[2]!.user_id, null)
  t.equal(events[3]!.session_id, firstSid)
  t.same(JSON.parse(events[3]!.detail!), { transport: 'body' })
  t.equal(events[4]!.session_id, firstSid, 'reuse names the session that was ended')
  t.equal(events[4]!.user_id, userId)
  t.equal(events[4]!.at - events[3]!.at >= 30_000, true, 'time is recorded')
  t.equal(events[9]!.session_id, fourthSid)
  t.same(JSON.parse(events[10]!.detail!), { endedSessions: 0 }, 'the fourth session was already deleted')
  t.same(JSON.parse(events[11]!.detail!), { count: 1 })
})

t.test('no audit row ever holds a password, a token or a hash', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const secrets: string[] = [PASSWORD, NEW_PASSWORD]
  const a = await login(app, { transport: 'body' })
  const refreshed = await refreshWithBody(app, a.refreshToken)
  secrets.push(a.accessToken, a.refreshToken, refreshed.json().refreshToken, refreshed.json().accessToken)
  const b = await login(app)
  secrets.push(b.accessToken, b.refreshToken)
  await login(app, { password: 'guess number one!' })
  secrets.push('guess number one!')
  await app.inject({ method: 'POST', url: '/api/auth/password', headers: bearer(b.accessToken), payload: { currentPassword: PASSWORD, newPassword: NEW_PASSWORD } })
  await app.inject({ method: 'POST', url: '/api/auth/logout', payload: { refreshToken: refreshed.json().refreshToken } })
  const admin = await adminSession(app)
  secrets.push(admin.token)
  await app.inject({ method: 'POST', url: '/api/admin/users', headers: admin.headers, payload: { username: 'carol', password: 'carol\'s first passphrase', roles: ['user'] } })
  secrets.push('carol\'s first passphrase')
  await app.inject({ method: 'POST', url: '/api/admin/users/name:alice/disable', headers: admin.headers })
  await app.audit.settled()

  const hashes = await column<string>(app, 'SELECT password_hash FROM users')
  const tokenHashes = (await column<Buffer>(app, 'SELECT token_hash FROM refresh_tokens')).map((h) => h.toString('hex'))
  const dump = JSON.stringify(await rows(app, 'SELECT * FROM audit_events'))
  t.ok(dump.length > 500, 'there is something to look at')
  for (const s of [...secrets, ...hashes, ...tokenHashes, ...tokenHashes.map((h) => Buffer.from(h, 'hex').toString('base64url'))]) {
    t.notOk(dump.toLowerCase().includes(s.toLowerCase()), `not in the audit log: ${s.slice(0, 12)}...`)
  }
  t.notMatch(dump, /\$argon2/)
})

t.test('a failed audit write is logged and the request goes on', async (t) => {
  const lines: string[] = []
  const logStream = new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(...chunk.toString().split('\n').filter(Boolean)); cb() } })
  const app = await buildTestApp(t, { LOG_LEVEL: 'info' }, { logStream })
  await register(app)
  await run(app, 'DROP TABLE audit_events')
  const wrong = await login(app, { password: 'a wrong password here' })
  await app.audit.settled()
  t.equal(wrong.res.statusCode, 401, 'a failed login is still answered as one')
  // The login's event is written in the session's own transaction (on PostgreSQL, whose
  // transaction its failed insert aborts, the session is then written again without it).
  const res = await login(app)
  t.equal(res.res.statusCode, 200, 'login still works')
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(res.accessToken) })).statusCode, 200, 'and its session is stored')
  await app.audit.settled()
  const failed = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'audit event could not be recorded')
    .map((l) => ({ audit: l.audit, reqId: l.reqId }))
  t.same(failed, [
    { audit: 'login_failed', reqId: wrong.res.headers['x-request-id'] },
    { audit: 'login_succeeded', reqId: res.res.headers['x-request-id'] }
  ], 'both failures logged, with their request ids')
})

/** From here on every insert into audit_events fails, as a full disk or a broken table would make it. */
async function failAuditInserts (app: Awaited<ReturnType<typeof buildTestApp>>): Promise<void> {
  if (app.database.kind === 'sqlite') {
    await run(app, "CREATE TEMP TRIGGER fail_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit write failed'); END")
    return
  }
  await run(app, "CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit write failed'; END $$")
  await run(app, 'CREATE TRIGGER fail_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION fail_audit()')
}

t.test('a failed audit insert never fails the change it records: a registration over a taken address, an e-mail verification, a password reset', async (t) => {
  const smtp = await startSmtpSink(t)
  const lines: string[] = []
  const logStream = new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(...chunk.toString().split('\n').filter(Boolean)); cb() } })
  const app = await buildTestApp(t, {
    LOG_LEVEL: 'info',
    REQUIRE_EMAIL_VERIFICATION: 'true',
    MAIL_TRANSPORT: 'smtp',
    SMTP_URL: smtp.url,
    MAIL_FROM: 'Example <no-reply@example.test>',
    MAIL_POLL_INTERVAL: '100ms',
    PASSWORD_FORGOT_MIN_DURATION: '20ms'
  }, { logStream })
  const post = async (url: string, payload: Record<string, unknown>): Promise<{ statusCode: number, body: string }> => await app.inject({ method: 'POST', url, payload })
  const tokenIn = (text: string, page: string): string => {
    const m = new RegExp(`${page}\\?token=([A-Za-z0-9_-]{43})`).exec(text)
    if (m === null) throw new Error(`no ${page} link in: ${text}`)
    return m[1]!
  }
  t.equal((await post('/api/auth/register', { username: 'alice', password: PASSWORD, email: 'alice@example.test' })).statusCode, 201)
  const [verification] = await smtp.waitFor(1)
  await app.audit.settled()
  const before = await count(app, 'SELECT count(*) FROM audit_events')
  await failAuditInserts(app)

  const taken = await post('/api/auth/register', { username: 'mallory', password: PASSWORD, email: 'alice@example.test' })
  t.equal(taken.statusCode, 201, `a registration over a taken address is answered as a new one (${taken.body})`)
  const notice = (await smtp.waitFor(2))[1]!
  t.match(notice.text, /reset-password/, 'and the address\'s owner is told')

  const verified = await post('/api/auth/email/verify', { token: tokenIn(verification!.text, 'verify-email') })
  t.equal(verified.statusCode, 204, `the address is verified (${verified.body})`)

  t.equal((await post('/api/auth/password/forgot', { username: 'alice' })).statusCode, 202)
  const resetMail = (await smtp.waitFor(3))[2]!
  const reset = await post('/api/auth/password/reset', { token: tokenIn(resetMail.text, 'reset-password'), newPassword: NEW_PASSWORD })
  t.ok(reset.statusCode < 300, `the password is reset (${reset.statusCode} ${reset.body})`)
  const { res } = await login(app, { password: NEW_PASSWORD })
  t.equal(res.statusCode, 200, 'the new password logs in')

  await app.audit.settled()
  const failed = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'audit event could not be recorded').map((l) => l.audit as string)
  for (const type of ['register_address_taken', 'email_verified', 'password_reset_requested', 'password_reset', 'login_succeeded']) {
    t.ok(failed.includes(type), `the failed ${type} event is logged`)
  }
  t.equal(await count(app, 'SELECT count(*) FROM audit_events'), before, 'and none was written')
})

t.test('a login writes its audit event inside the session\'s transaction (one commit, not two)', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const seen: Array<{ type: string, inTransaction?: boolean, sessionExists?: boolean }> = []
  const recordNow = app.repos.audit.recordNow
  app.repos.audit.recordNow = (e) => {
    // SQLite: when the event is recorded, the transaction is open and the session's row is in it.
    // (On PostgreSQL the repository collects the event and inserts it in its transaction; the
    // row's xmin below says which transaction that was.)
    seen.push(app.database.kind === 'sqlite'
      ? { type: e.type, inTransaction: app.database.inTransaction(), sessionExists: e.sessionId != null && app.sqlite.prepare('SELECT 1 FROM sessions WHERE id = ?').get(e.sessionId) !== undefined }
      : { type: e.type })
    recordNow(e)
  }
  const { res } = await login(app)
  t.equal(res.statusCode, 200)
  t.same(seen, [app.database.kind === 'sqlite' ? { type: 'login_succeeded', inTransaction: true, sessionExists: true } : { type: 'login_succeeded' }])
  await app.audit.settled()
  const stored = await column<string>(app, "SELECT session_id FROM audit_events WHERE type = 'login_succeeded'")
  t.equal(stored.length, 1, 'one event, stored')
  t.equal(await count(app, 'SELECT count(*) FROM sessions WHERE id = ?', stored[0]), 1, 'naming the new session')
  if (app.database.kind === 'postgres') {
    // A row's xmin is the id of the transaction that wrote it.
    const [written] = await rows<{ session: string, event: string }>(app,
      "SELECT (SELECT xmin::text FROM sessions WHERE id = ?) AS session, (SELECT xmin::text FROM audit_events WHERE type = 'login_succeeded') AS event", stored[0])
    t.ok(written!.session, 'the session row was found')
    t.equal(written!.event, written!.session, 'the event and the session were written by one transaction')
  }
})

t.test('admin actions are recorded with the target user and who acted', async (t) => {
  const app = await buildTestApp(t)
  const bob = (await register(app, 'bob')).json().id as string
  await login(app, { username: 'bob', transport: 'body' })
  const admin = await adminSession(app)
  // Each event is written before the next request: the ids then follow the order of events.
  await app.inject({ method: 'PUT', url: '/api/admin/users/name:bob/roles', headers: admin.headers, payload: { roles: ['user', 'editor'] } })
  await app.audit.settled()
  await app.inject({ method: 'POST', url: '/api/admin/users/name:bob/disable', headers: admin.headers })
  await app.audit.settled()
  await app.inject({ method: 'POST', url: '/api/admin/users/name:bob/enable', headers: admin.headers })
  await app.audit.settled()
  const events = (await rows<Row>(app, "SELECT type, user_id, detail FROM audit_events WHERE type IN ('roles_changed', 'user_disabled', 'user_enabled') ORDER BY id"))
    .map((r) => ({ type: r.type, userId: r.user_id, detail: JSON.parse(r.detail!) }))
  t.same(events, [
    { type: 'roles_changed', userId: bob, detail: { from: ['user'], to: ['user', 'editor'], by: admin.userId } },
    { type: 'user_disabled', userId: bob, detail: { endedSessions: 1, by: admin.userId } },
    { type: 'user_enabled', userId: bob, detail: { by: admin.userId } }
  ])
})

t.test('GET /api/admin/audit lists events newest first, filtered by user and type, paged by id', async (t) => {
  const app = await buildTestApp(t)
  // Each event is written before the next request: the ids then follow the order of events.
  const settled = async <T>(answer: T): Promise<T> => { await app.audit.settled(); return answer }
  const alice = (await settled(await register(app))).json().id as string
  await settled(await register(app, 'bob'))
  await settled(await login(app))
  await settled(await login(app, { username: 'bob' }))
  await settled(await login(app, { password: 'not alice\'s password' }))
  const admin = await settled(await adminSession(app))
  const get = async (query: string) => await app.inject({ url: `/api/admin/audit${query}`, headers: admin.headers })

  const all = (await get('')).json() as Array<{ id: number, type: string, userId: string | null, at: string }>
  t.ok(all.length >= 7)
  t.ok(all.every((e, i) => i === 0 || e.id < all[i - 1]!.id), 'newest first')
  t.match(all[0]!.at, /^\d{4}-\d\d-\d\dT/)
  const aliceEvents = (await get(`?userId=${alice}`)).json() as typeof all
  t.same(aliceEvents.map((e) => e.type), ['login_failed', 'login_succeeded', 'register'])
  const failures = (await get('?type=login_failed')).json() as typeof all
  t.same(failures.map((e) => e.userId), [alice])
  const page = (await get(`?limit=2&before=${all[1]!.id}`)).json() as typeof all
  t.same(page.map((e) => e.id), [all[2]!.id, all[3]!.id])
  t.equal((await get('?type=nonsense')).statusCode, 400)
  t.equal((await get('?limit=0')).statusCode, 400)
  t.equal((await get('?limit=abc')).statusCode, 400)
  const { accessToken } = await login(app)
  t.equal((await app.inject({ url: '/api/admin/audit', headers: bearer(accessToken) })).statusCode, 403, 'not for non-admins')
})

t.test('the service\'s own key-ring changes are audited as key_rotated (never key material)', async (t) => {
  const env = { DATABASE_URL: await sharedDatabaseUrl(t) }
  const keyEvents = async (app: Awaited<ReturnType<typeof buildTestApp>>) => {
    await app.audit.settled()
    return (await column<string>(app, "SELECT detail FROM audit_events WHERE type = 'key_rotated' ORDER BY id"))
      .map((detail) => JSON.parse(detail) as Record<string, unknown>)
  }
  const first = await buildTestApp(t, env)
  const boot = await keyEvents(first)
  const kid = first.keyRing.signingKey(new Date()).kid
  t.same(boot.map((e) => e.event), ['created', 'activated'], 'the first key, created and signing at once')
  t.match(boot[0], { kid, alg: 'ES256', by: 'schedule' })
  await first.close()

  // A restart with another algorithm schedules a key of that algorithm: recorded too.
  const second = await buildTestApp(t, { ...env, JWT_ALGORITHM: 'EdDSA' })
  t.match((await keyEvents(second)).at(-1), { event: 'created', alg: 'EdDSA', by: 'schedule' })
  const raw = JSON.stringify(await rows(second, 'SELECT * FROM audit_events'))
  t.notMatch(raw, /PRIVATE KEY|"d":/, 'no key material in the audit log')
})
