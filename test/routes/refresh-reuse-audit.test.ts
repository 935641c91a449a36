/**
 * A late reuse ends the session, and its audit event is committed in the same transaction as
 * the revocation: no reader ever sees one without the other, and a failure that rolls the
 * transaction back takes both with it.
 */
import Database from 'better-sqlite3'
import t from 'tap'
import { buildTestApp, login, refreshWithBody, register } from '../support/app.js'
import { fakeDate, SECOND } from '../support/clock.js'
import { decodeJwt } from '../support/jwt.js'

const REUSE_INTERVAL = { REFRESH_REUSE_INTERVAL: '5s' }

interface SessionState { revoked_at: number | null, revoked_reason: string | null }

t.test('when the reuse audit event is written, no other connection sees the revocation yet: both commit together', async (t) => {
  const clock = fakeDate(t)
  const dir = t.testdir()
  const path = `${dir}/auth.db`
  const app = await buildTestApp(t, { ...REUSE_INTERVAL, DATABASE_URL: `file:${path}` })
  await register(app)
  const first = await login(app, { transport: 'body' })
  const sid = decodeJwt(first.accessToken).payload.sid as string
  t.equal((await refreshWithBody(app, first.refreshToken)).statusCode, 200)

  // A second connection on the same file, as another instance or the admin CLI has.
  const other = new Database(path, { readonly: true })
  t.teardown(() => other.close())
  const sessionSeenByOther = other.prepare('SELECT revoked_at, revoked_reason FROM sessions WHERE id = ?')
  // While the service inserts the audit event, look at the session from the other connection.
  const seenWhileAuditing: SessionState[] = []
  app.sqlite.function('look_from_other_connection', (sessionId: unknown) => {
    seenWhileAuditing.push(sessionSeenByOther.get(sessionId) as SessionState)
    return 0
  })
  app.sqlite.exec(`CREATE TEMP TRIGGER look_at_reuse_audit BEFORE INSERT ON audit_events
    WHEN NEW.type = 'refresh_reuse_detected' BEGIN SELECT look_from_other_connection(NEW.session_id); END`)

  clock.advance(30 * SECOND)
  const reuse = await refreshWithBody(app, first.refreshToken)
  t.equal(reuse.statusCode, 401)
  t.equal(reuse.json().code, 'TOKEN_REUSED')

  t.same(seenWhileAuditing, [{ revoked_at: null, revoked_reason: null }],
    'the audit event was written before the revocation was visible to anyone: one transaction')
  const after = sessionSeenByOther.get(sid) as SessionState
  t.equal(after.revoked_reason, 'reuse', 'after the commit the other connection sees the revocation')
  const audited = other.prepare("SELECT session_id FROM audit_events WHERE type = 'refresh_reuse_detected'").all()
  t.same(audited, [{ session_id: sid }], 'and its audit event')
})

t.test('a failure that rolls back the reuse audit event rolls back the revocation too; the next reuse ends the session and is recorded', async (t) => {
  const clock = fakeDate(t)
  // SQLite (a trigger makes the insert fail), whatever TEST_DATABASE says.
  const app = await buildTestApp(t, { ...REUSE_INTERVAL, DATABASE_URL: ':memory:' })
  await register(app)
  const first = await login(app, { transport: 'body' })
  const sid = decodeJwt(first.accessToken).payload.sid as string
  const second = await refreshWithBody(app, first.refreshToken)
  t.equal(second.statusCode, 200)
  const session = app.sqlite.prepare('SELECT revoked_at, revoked_reason FROM sessions WHERE id = ?')
  const reuseEvents = app.sqlite.prepare("SELECT count(*) AS n FROM audit_events WHERE type = 'refresh_reuse_detected'").pluck()

  // What a disk-full or I/O error does to an INSERT: SQLite ends the whole transaction.
  app.sqlite.exec(`CREATE TEMP TRIGGER fail_reuse_audit BEFORE INSERT ON audit_events
    WHEN NEW.type = 'refresh_reuse_detected' BEGIN SELECT RAISE(ROLLBACK, 'audit write failed'); END`)
  clock.advance(30 * SECOND)
  const failed = await refreshWithBody(app, first.refreshToken)
  t.equal(failed.statusCode >= 500, true, `the refused write is an error of the service (${failed.statusCode})`)
  t.same(session.get(sid), { revoked_at: null, revoked_reason: null }, 'the session was not ended without its audit event')
  t.equal(reuseEvents.get(), 0)

  app.sqlite.exec('DROP TRIGGER fail_reuse_audit')
  const reuse = await refreshWithBody(app, first.refreshToken)
  t.equal(reuse.statusCode, 401)
  t.equal(reuse.json().code, 'TOKEN_REUSED')
  t.equal((session.get(sid) as SessionState).revoked_reason, 'reuse')
  t.equal(reuseEvents.get(), 1, 'the revocation and its audit event, together')
  t.equal((await refreshWithBody(app, second.json().refreshToken)).statusCode, 401, 'the session is over')
})
