/**
 * Changing the address over HTTP, with the mail delivered by the app's outbox worker to a real
 * SMTP server on loopback: the link is read from the received message, opened with GET and
 * HEAD first (as a mail scanner would: nothing may be spent), then the token is POSTed.
 * Runs on SQLite and, with TEST_DATABASE=postgres, on PostgreSQL.
 */
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { PASSWORD, bearer, buildTestApp, until } from '../support/app.js'
import { count, rows } from '../support/db.js'
import { startSmtpSink, type ReceivedMail, type SmtpSink } from '../support/smtp.js'

const MAIL_ENV = { MAIL_TRANSPORT: 'smtp', MAIL_FROM: 'Example <no-reply@example.test>', MAIL_PRODUCT_NAME: 'Example' }
const PUBLIC = 'http://localhost:3000'

interface Setup { app: FastifyInstance, smtp: SmtpSink, log: () => string }

async function setup (t: Test, env: Record<string, string> = {}): Promise<Setup> {
  const smtp = await startSmtpSink(t)
  const chunks: string[] = []
  const logStream = new Writable({ write (chunk: Buffer, _enc, cb) { chunks.push(chunk.toString('utf8')); cb() } })
  const app = await buildTestApp(t, { ...MAIL_ENV, SMTP_URL: smtp.url, LOG_LEVEL: 'trace', ...env }, { logStream })
  return { app, smtp, log: () => chunks.join('') }
}

async function account (app: FastifyInstance, username: string, email: string | null): Promise<string> {
  const reg = await app.inject({ method: 'POST', url: '/api/auth/register', payload: { username, password: PASSWORD, ...(email === null ? {} : { email }) } })
  if (reg.statusCode !== 201) throw new Error(reg.body)
  return await accessToken(app, username)
}

async function accessToken (app: FastifyInstance, username: string): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username, password: PASSWORD, transport: 'body' } })
  if (res.statusCode !== 200) throw new Error(res.body)
  return res.json().accessToken
}

async function requestChange (app: FastifyInstance, access: string, newEmail: string, password = PASSWORD) {
  return await app.inject({ method: 'POST', url: '/api/auth/email/change', headers: bearer(access), payload: { newEmail, password } })
}

async function confirm (app: FastifyInstance, token: string) {
  return await app.inject({ method: 'POST', url: '/api/auth/email/confirm', payload: { token } })
}

async function me (app: FastifyInstance, access: string) {
  return await app.inject({ url: '/api/auth/me', headers: bearer(access) })
}

/** The account link in a received message: its path under PUBLIC_URL and its token. */
function linkOf (mail: ReceivedMail, page: string): { path: string, token: string } {
  const match = new RegExp(`${PUBLIC}(${page}\\?token=[A-Za-z0-9_%-]+)`).exec(mail.text)
  if (match === null) throw new Error(`no ${page} link in: ${mail.text}`)
  return { path: match[1]!, token: decodeURIComponent(new URL(match[1]!, PUBLIC).searchParams.get('token')!) }
}

/** What a mail scanner does with a link: GET and HEAD it. Nothing of the service may fail. */
async function scan (t: Test, app: FastifyInstance, path: string): Promise<void> {
  for (const method of ['GET', 'HEAD'] as const) {
    const res = await app.inject({ method, url: path })
    t.ok(res.statusCode < 500, `${method} ${path.replace(/token=.*/, 'token=…')} answers ${res.statusCode}`)
  }
}

/** Moves every account token's expiry into the past (as if its TTL had run out). */
async function expireTokens (app: FastifyInstance): Promise<void> {
  const past = Date.now() - 1000
  if (app.database.kind === 'sqlite') app.sqlite.prepare('UPDATE account_tokens SET expires_at = ?').run(past)
  else await rows(app, 'UPDATE account_tokens SET expires_at = ?', new Date(past))
}

const CONFIRM_SUBJECT = 'Confirm your new e-mail address for Example'
const NOTICE_SUBJECT = 'The e-mail address of your Example account is changing'

/**
 * The `nth` message (1-based) with this subject to `to`, once it has arrived. Other messages
 * (a verification mail at registration, say) may arrive in between.
 */
async function mailTo (smtp: SmtpSink, to: string, subject: string, nth = 1): Promise<ReceivedMail> {
  const matching = (): ReceivedMail[] => smtp.messages.filter((m) => m.to.includes(to) && m.header('subject') === subject)
  await until(() => matching().length >= nth)
  return matching()[nth - 1]!
}

/** Messages of one kind written to the outbox (whatever else other flows write). */
async function outboxOf (app: FastifyInstance, kind: string): Promise<number> {
  return await count(app, 'SELECT count(*) FROM mail_outbox WHERE kind = ?', kind)
}

t.test('change → confirm link at the new address → notice with an undo link at the old one → undo; scanners spend nothing', async (t) => {
  const { app, smtp, log } = await setup(t)
  const access = await account(app, 'alice', 'alice@example.test')

  const asked = await requestChange(app, access, '  Alice.New@Example.TEST ')
  t.equal(asked.statusCode, 202, asked.body)
  const confirmMail = await mailTo(smtp, 'Alice.New@example.test', CONFIRM_SUBJECT)
  t.same(confirmMail.to, ['Alice.New@example.test'], 'to the new address, normalised')
  const confirmLink = linkOf(confirmMail, '/account/confirm-email')
  t.match((await me(app, access)).json(), { email: 'alice@example.test', emailVerified: false }, 'nothing changes before the link is used')

  await scan(t, app, confirmLink.path)
  const confirmed = await confirm(app, confirmLink.token)
  t.equal(confirmed.statusCode, 204, confirmed.body)
  t.match((await me(app, access)).json(), { email: 'Alice.New@example.test', emailVerified: true }, 'the link proved the new address')
  const byNewAddress = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: 'alice.new@example.test', password: PASSWORD, transport: 'body' } })
  t.equal(byNewAddress.statusCode, 200, 'login by the new address')
  t.equal((await confirm(app, confirmLink.token)).json().code, 'ACCOUNT_TOKEN_INVALID', 'the confirmation link works once')

  const notice = await mailTo(smtp, 'alice@example.test', NOTICE_SUBJECT)
  t.match(notice.text, 'Alice.New@example.test', 'the notice at the old address names the new one')
  const undoLink = linkOf(notice, '/account/undo-email-change')
  await scan(t, app, undoLink.path)
  const undone = await confirm(app, undoLink.token)
  t.equal(undone.statusCode, 204, undone.body)

  t.equal((await me(app, access)).statusCode, 401, 'every session ended: the access token of before no longer works')
  t.equal((await me(app, byNewAddress.json().accessToken)).statusCode, 401, 'nor that of the session started with the new address')
  const refreshed = await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: byNewAddress.json().refreshToken } })
  t.equal(refreshed.statusCode, 401, 'its refresh token is refused')
  const again = await accessToken(app, 'alice')
  t.match((await me(app, again)).json(), { email: 'alice@example.test', emailVerified: true }, 'the old address is back, verified')
  t.equal((await confirm(app, undoLink.token)).json().code, 'ACCOUNT_TOKEN_INVALID', 'the undo link works once')

  const events = await rows<{ type: string }>(app, 'SELECT type FROM audit_events WHERE type LIKE ? ORDER BY id', 'email_%')
  t.same(events.map((e) => e.type), ['email_change_requested', 'email_changed', 'email_change_undone'])
  const text = log()
  t.ok(text.includes('address change undone'), 'the log was captured')
  for (const secret of [confirmLink.token, undoLink.token, PASSWORD]) t.notOk(text.includes(secret), 'no token or password in the log')
})

t.test('refused requests: wrong password, malformed, unchanged or taken address; nothing is mailed', async (t) => {
  const { app } = await setup(t)
  const access = await account(app, 'alice', 'alice@example.test')
  await account(app, 'bob', 'bob@example.test')

  const wrong = await requestChange(app, access, 'new@example.test', 'not the password at all')
  t.equal(wrong.statusCode, 403)
  t.equal(wrong.json().code, 'INVALID_CURRENT_PASSWORD')
  const malformed = await requestChange(app, access, 'not an address')
  t.equal(malformed.statusCode, 400)
  t.equal(malformed.json().code, 'INVALID_EMAIL')
  const same = await requestChange(app, access, 'ALICE@example.test')
  t.equal(same.statusCode, 400)
  t.same(same.json(), { statusCode: 400, code: 'EMAIL_UNCHANGED', message: 'This is already the address of the account' })
  const taken = await requestChange(app, access, 'Bob@Example.test')
  t.equal(taken.statusCode, 409)
  t.equal(taken.json().code, 'EMAIL_TAKEN')
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/email/change', payload: { newEmail: 'x@example.test', password: PASSWORD } })).statusCode, 401, 'Bearer required')
  t.equal(await outboxOf(app, 'email_change_confirm'), 0, 'no message was written')
  t.equal((await confirm(app, 'A'.repeat(43))).json().code, 'ACCOUNT_TOKEN_INVALID', 'an unknown token')
  t.equal((await confirm(app, 'short')).json().code, 'ACCOUNT_TOKEN_INVALID', 'a string that is no token')
})

t.test('an account without an address gets one by the link; no notice, no undo', async (t) => {
  const { app, smtp } = await setup(t)
  const access = await account(app, 'carol', null)
  t.equal((await requestChange(app, access, 'carol@example.test')).statusCode, 202)
  const mail = await mailTo(smtp, 'carol@example.test', CONFIRM_SUBJECT)
  t.equal((await confirm(app, linkOf(mail, '/account/confirm-email').token)).statusCode, 204)
  t.match((await me(app, access)).json(), { email: 'carol@example.test', emailVerified: true })
  t.equal(await count(app, "SELECT count(*) FROM account_tokens WHERE purpose = 'undo_email_change'"), 0, 'no undo token for an address there never was')
  t.equal(await outboxOf(app, 'email_change_notice'), 0, 'no notice')
})

t.test('an address taken meanwhile: confirm answers 409 EMAIL_TAKEN and changes nothing; so does an undo', async (t) => {
  const { app, smtp } = await setup(t)
  const access = await account(app, 'alice', 'alice@example.test')
  t.equal((await requestChange(app, access, 'dave@example.test')).statusCode, 202)
  const mail = await mailTo(smtp, 'dave@example.test', CONFIRM_SUBJECT)
  await account(app, 'dave', 'dave@example.test')
  const refused = await confirm(app, linkOf(mail, '/account/confirm-email').token)
  t.equal(refused.statusCode, 409)
  t.equal(refused.json().code, 'EMAIL_TAKEN')
  t.match((await me(app, access)).json(), { email: 'alice@example.test' })

  t.equal((await requestChange(app, access, 'alice2@example.test')).statusCode, 202)
  const second = await mailTo(smtp, 'alice2@example.test', CONFIRM_SUBJECT)
  t.equal((await confirm(app, linkOf(second, '/account/confirm-email').token)).statusCode, 204)
  const notice = await mailTo(smtp, 'alice@example.test', NOTICE_SUBJECT)
  // The old address is free once changed: someone registers it before the undo.
  await account(app, 'erin', 'alice@example.test')
  const undo = await confirm(app, linkOf(notice, '/account/undo-email-change').token)
  t.equal(undo.statusCode, 409)
  t.equal(undo.json().code, 'EMAIL_TAKEN')
  t.match((await me(app, access)).json(), { email: 'alice2@example.test' }, 'unchanged, and the session lives on')
})

t.test('expired, superseded, or voided by a password change: 400 ACCOUNT_TOKEN_INVALID', async (t) => {
  const { app, smtp } = await setup(t)
  const access = await account(app, 'alice', 'alice@example.test')

  await requestChange(app, access, 'one@example.test')
  await requestChange(app, access, 'two@example.test')
  const first = await mailTo(smtp, 'one@example.test', CONFIRM_SUBJECT)
  const second = await mailTo(smtp, 'two@example.test', CONFIRM_SUBJECT)
  t.equal((await confirm(app, linkOf(first, '/account/confirm-email').token)).json().code, 'ACCOUNT_TOKEN_INVALID', 'a newer request voids the older link')

  await expireTokens(app)
  t.equal((await confirm(app, linkOf(second, '/account/confirm-email').token)).json().code, 'ACCOUNT_TOKEN_INVALID', 'expired')

  await requestChange(app, access, 'three@example.test')
  const third = await mailTo(smtp, 'three@example.test', CONFIRM_SUBJECT)
  const changed = await app.inject({ method: 'POST', url: '/api/auth/password', headers: bearer(access), payload: { currentPassword: PASSWORD, newPassword: `${PASSWORD} again` } })
  t.equal(changed.statusCode, 204)
  t.equal((await confirm(app, linkOf(third, '/account/confirm-email').token)).json().code, 'ACCOUNT_TOKEN_INVALID', 'the password changed since the request')
  t.match((await me(app, access)).json(), { email: 'alice@example.test' })
})

t.test('two concurrent confirmations of one link: one wins', async (t) => {
  const { app, smtp } = await setup(t)
  const access = await account(app, 'alice', 'alice@example.test')
  await requestChange(app, access, 'new@example.test')
  const { token } = linkOf(await mailTo(smtp, 'new@example.test', CONFIRM_SUBJECT), '/account/confirm-email')
  const results = await Promise.all([confirm(app, token), confirm(app, token), confirm(app, token)])
  t.same(results.map((r) => r.statusCode).sort(), [204, 400, 400])
  t.equal(await outboxOf(app, 'email_change_notice'), 1, 'one notice')
})

t.test('requests per account are limited (RATE_LIMIT_EMAIL_CHANGE_MAX)', async (t) => {
  const { app } = await setup(t, { RATE_LIMIT_EMAIL_CHANGE_MAX: '2', RATE_LIMIT_EMAIL_CHANGE_WINDOW: '1h' })
  const alice = await account(app, 'alice', 'alice@example.test')
  const bob = await account(app, 'bob', 'bob@example.test')
  t.equal((await requestChange(app, alice, 'a1@example.test')).statusCode, 202)
  t.equal((await requestChange(app, alice, 'a2@example.test')).statusCode, 202)
  const third = await requestChange(app, alice, 'a3@example.test')
  t.equal(third.statusCode, 429)
  t.equal(third.json().code, 'RATE_LIMITED')
  t.ok(Number(third.headers['retry-after']) > 0, 'Retry-After')
  t.equal((await requestChange(app, bob, 'b1@example.test')).statusCode, 202, 'another account has its own budget')
  t.equal(await outboxOf(app, 'email_change_confirm'), 3, 'one mail per request let through')
})

t.test('without MAIL_TRANSPORT both endpoints answer 503 MAIL_DISABLED, whatever the input', async (t) => {
  const app = await buildTestApp(t)
  const access = await account(app, 'alice', 'alice@example.test')
  for (const res of [
    await requestChange(app, access, 'new@example.test'),
    await requestChange(app, access, 'not an address', 'wrong password here'),
    await confirm(app, 'A'.repeat(43))
  ]) {
    t.equal(res.statusCode, 503)
    t.equal(res.json().code, 'MAIL_DISABLED')
  }
})
