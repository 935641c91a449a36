/**
 * Deleting an account over HTTP (the owner, an administrator) and from the admin CLI: what
 * stops working, what is freed, what the audit log keeps, and the notice delivered to a real
 * SMTP server on loopback. Runs on SQLite and, with TEST_DATABASE=postgres, on PostgreSQL.
 */
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { recentlyAuthenticated } from '../../src/auth/account-deletion.js'
import { runAdminCommand } from '../../src/cli/admin.js'
import type { AccessClaims } from '../../src/keys/access-tokens.js'
import { PASSWORD, TEST_DATABASE, TEST_ENV, bearer, buildTestApp, refreshWithBody, until } from '../support/app.js'
import { fakeDate, MINUTE } from '../support/clock.js'
import { count, rows } from '../support/db.js'
import { startSmtpSink, type ReceivedMail, type SmtpSink } from '../support/smtp.js'

const MAIL_ENV = { MAIL_TRANSPORT: 'smtp', MAIL_FROM: 'Example <no-reply@example.test>', MAIL_PRODUCT_NAME: 'Example', MAIL_POLL_INTERVAL: '100ms' }

async function registerWith (app: FastifyInstance, username: string, email: string | null, headers: Record<string, string> = {}) {
  return await app.inject({ method: 'POST', url: '/api/auth/register', headers, payload: { username, password: PASSWORD, ...(email === null ? {} : { email }) } })
}

async function loginAs (app: FastifyInstance, username: string, headers: Record<string, string> = {}) {
  const res = await app.inject({ method: 'POST', url: '/api/auth/login', headers, payload: { username, password: PASSWORD, transport: 'body' } })
  if (res.statusCode !== 200) throw new Error(res.body)
  return { accessToken: res.json().accessToken as string, refreshToken: res.json().refreshToken as string }
}

async function deleteMe (app: FastifyInstance, access: string, payload: Record<string, unknown>) {
  return await app.inject({ method: 'DELETE', url: '/api/auth/me', headers: bearer(access), payload })
}

interface AuditRow { type: string, user_id: string | null, ip: string | null, user_agent: string | null, detail: unknown }

async function auditOf (app: FastifyInstance, userId: string): Promise<AuditRow[]> {
  const found = await rows<AuditRow>(app, 'SELECT type, user_id, ip, user_agent, detail FROM audit_events WHERE user_id = ? ORDER BY id', userId)
  return found.map((r) => ({ ...r, detail: typeof r.detail === 'string' ? JSON.parse(r.detail) : r.detail }))
}

const DELETED_SUBJECT = 'Your Example account was deleted'

/** The deletion notice to `to`, once it has arrived (other messages may arrive too). */
async function noticeTo (smtp: SmtpSink, to: string): Promise<ReceivedMail> {
  const find = (): ReceivedMail | undefined => smtp.messages.find((m) => m.to.includes(to) && m.header('subject') === DELETED_SUBJECT)
  await until(() => find() !== undefined)
  return find()!
}

const BROWSER = { 'user-agent': 'Mozilla/5.0 (alice\'s laptop)' }

t.test('delete my account: wrong password 403; right password 204; then nothing of it works, its names are free, the audit keeps a tombstone only', async (t) => {
  const smtp = await startSmtpSink(t)
  const app = await buildTestApp(t, { ...MAIL_ENV, SMTP_URL: smtp.url })
  const registered = await registerWith(app, 'alice', 'alice@example.test', BROWSER)
  const userId = registered.json().id as string
  const other = await loginAs(app, 'alice', BROWSER)
  const session = await loginAs(app, 'alice', BROWSER)

  const wrong = await deleteMe(app, session.accessToken, { password: 'not the password at all' })
  t.equal(wrong.statusCode, 403)
  t.equal(wrong.json().code, 'INVALID_CURRENT_PASSWORD')
  t.ok((await auditOf(app, userId)).some((e) => e.ip !== null && e.user_agent !== null), 'before: events carry the client address and user agent')

  const deleted = await deleteMe(app, session.accessToken, { password: PASSWORD })
  t.equal(deleted.statusCode, 204, deleted.body)

  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(session.accessToken) })).statusCode, 401, 'the access token of the deleting session')
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(other.accessToken) })).statusCode, 401, 'and of every other session')
  t.equal((await refreshWithBody(app, other.refreshToken)).statusCode, 401, 'refresh tokens are refused')
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'alice', password: PASSWORD } })).statusCode, 401, 'login')
  t.equal(await count(app, 'SELECT count(*) FROM sessions WHERE user_id = ?', userId), 0, 'sessions deleted')

  t.match((await noticeTo(smtp, 'alice@example.test')).text, 'were deleted', 'the notice reaches the address')

  const events = await auditOf(app, userId)
  const tombstone = events.at(-1)!
  t.match(tombstone, { type: 'account_deleted', ip: null, user_agent: null, detail: { by: 'self' } })
  for (const e of events) {
    t.equal(e.ip, null, `${e.type}: no client address`)
    t.equal(e.user_agent, null, `${e.type}: no user agent`)
    const text = JSON.stringify(e.detail ?? {})
    t.notOk(/alice/i.test(text), `${e.type}: no name or address in the detail`)
  }
  t.ok(events.some((e) => e.type === 'register'), 'earlier events stay, scrubbed')

  const again = await registerWith(app, 'alice', 'alice@example.test')
  t.equal(again.statusCode, 201, 'the username and the address can be registered again')
  t.not(again.json().id, userId, 'as a new account')
})

t.test('with mail off the account is deleted all the same, and nothing is queued', async (t) => {
  const app = await buildTestApp(t)
  await registerWith(app, 'bob', 'bob@example.test')
  const session = await loginAs(app, 'bob')
  t.equal((await deleteMe(app, session.accessToken, { password: PASSWORD })).statusCode, 204)
  t.equal(await count(app, 'SELECT count(*) FROM users'), 0)
  t.equal(await count(app, "SELECT count(*) FROM mail_outbox WHERE kind = 'account_deleted'"), 0, 'mail is off: nothing queued')
})

async function admin (app: FastifyInstance): Promise<{ id: string, accessToken: string }> {
  const reg = await registerWith(app, 'root', null)
  const id = reg.json().id as string
  if (app.database.kind === 'sqlite') app.sqlite.prepare('UPDATE users SET roles = ? WHERE id = ?').run('["admin","user"]', id)
  else await rows(app, 'UPDATE users SET roles = ?::jsonb WHERE id = ?', '["admin","user"]', id)
  return { id, accessToken: (await loginAs(app, 'root')).accessToken }
}

t.test('an administrator deletes a user: 204, the tombstone names the admin; not their own account (409); unknown 404; non-admin 403', async (t) => {
  const smtp = await startSmtpSink(t)
  const app = await buildTestApp(t, { ...MAIL_ENV, SMTP_URL: smtp.url })
  const root = await admin(app)
  const carolId = (await registerWith(app, 'carol', 'carol@example.test')).json().id as string
  const carol = await loginAs(app, 'carol')

  t.equal((await app.inject({ method: 'DELETE', url: '/api/admin/users/name:root', headers: bearer(carol.accessToken) })).statusCode, 403, 'not an admin')
  const own = await app.inject({ method: 'DELETE', url: '/api/admin/users/name:root', headers: bearer(root.accessToken) })
  t.equal(own.statusCode, 409)
  t.equal(own.json().code, 'ADMIN_SELF_LOCKOUT')

  const res = await app.inject({ method: 'DELETE', url: '/api/admin/users/name:carol', headers: bearer(root.accessToken) })
  t.equal(res.statusCode, 204, res.body)
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(carol.accessToken) })).statusCode, 401)
  t.equal((await app.inject({ method: 'DELETE', url: '/api/admin/users/name:carol', headers: bearer(root.accessToken) })).statusCode, 404)
  t.match((await auditOf(app, carolId)).at(-1), { type: 'account_deleted', detail: { by: `admin:${root.id}` } })
  await noticeTo(smtp, 'carol@example.test')
})

/** A database the CLI can open too: a file on SQLite, the app's own on PostgreSQL. */
async function sharedApp (t: Test, env: Record<string, string>): Promise<FastifyInstance> {
  if (TEST_DATABASE === 'postgres') return await buildTestApp(t, env)
  return await buildTestApp(t, { ...env, DATABASE_URL: `file:${join(t.testdir(), 'auth.db')}` })
}

t.test('admin CLI delete-user: the same deletion, the tombstone says cli, the notice is delivered by the service', async (t) => {
  const smtp = await startSmtpSink(t)
  const env = { ...MAIL_ENV, SMTP_URL: smtp.url }
  const app = await sharedApp(t, env)
  const daveId = (await registerWith(app, 'dave', 'dave@example.test')).json().id as string
  const dave = await loginAs(app, 'dave')

  const out: string[] = []
  const err: string[] = []
  const run = async (argv: string[]) => await runAdminCommand(argv, {
    env: { ...TEST_ENV, ...env, DATABASE_URL: app.config.databaseUrl },
    stdout: (s) => { out.push(s) },
    stderr: (s) => { err.push(s) }
  })
  t.equal(await run(['delete-user', 'name:dave']), 0, err.join('\n'))
  t.match(out.join('\n'), /deleted dave/)
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(dave.accessToken) })).statusCode, 401)
  t.match((await auditOf(app, daveId)).at(-1), { type: 'account_deleted', detail: { by: 'cli' } })
  await noticeTo(smtp, 'dave@example.test')
  t.equal(await run(['delete-user', 'name:dave']), 1, 'gone')
  t.equal(await run(['delete-user', 'dave']), 64, 'a bare name is refused')
})

t.test('without the password, DELETE /me needs a login (auth_time) at most ACCOUNT_DELETE_RECENT_LOGIN old', async (t) => {
  const clock = fakeDate(t, Date.now(), { running: true })
  const app = await buildTestApp(t, { ACCOUNT_DELETE_RECENT_LOGIN: '5m', ACCESS_TOKEN_TTL: '15m' })
  t.equal((await registerWith(app, 'erin', null)).statusCode, 201)
  const old = await loginAs(app, 'erin')
  clock.advance(6 * MINUTE)
  // A refresh keeps the session's auth_time: a refreshed token proves no newer login.
  const refreshed = (await refreshWithBody(app, old.refreshToken)).json().accessToken as string
  for (const token of [old.accessToken, refreshed]) {
    const stale = await deleteMe(app, token, {})
    t.equal(stale.statusCode, 403)
    t.equal(stale.json().code, 'REAUTHENTICATION_REQUIRED')
  }
  const fresh = await loginAs(app, 'erin')
  t.equal((await deleteMe(app, fresh.accessToken, {})).statusCode, 204, 'a login a moment ago will do')
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'erin', password: PASSWORD } })).statusCode, 401, 'gone')
})

t.test('a recent login stands in for the password only through auth_time, within ACCOUNT_DELETE_RECENT_LOGIN', async (t) => {
  const now = new Date('2026-01-01T12:00:00Z')
  const at = (secondsAgo: number) => ({ auth_time: now.getTime() / 1000 - secondsAgo }) as unknown as AccessClaims
  t.equal(recentlyAuthenticated(at(60), now, 300), true)
  t.equal(recentlyAuthenticated(at(301), now, 300), false, 'too old')
  t.equal(recentlyAuthenticated(at(-3600), now, 300), false, 'in the future')
  t.equal(recentlyAuthenticated({} as AccessClaims, now, 300), false, 'no auth_time')
  t.equal(recentlyAuthenticated({ auth_time: '1' } as unknown as AccessClaims, now, 300), false, 'not a number')
})
