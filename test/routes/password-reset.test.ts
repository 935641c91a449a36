/**
 * Forgot and reset password over HTTP, with the app's outbox delivering to a real SMTP server on
 * loopback (test/support/smtp.ts): each test reads the link from the received message, opens it
 * with GET and HEAD as a mail scanner would (through the app: the link is under PUBLIC_URL), and
 * then completes the flow by the POST. Runs on SQLite and, with TEST_DATABASE=postgres, on
 * PostgreSQL.
 */
import { Writable } from 'node:stream'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { runAdminCommand } from '../../src/cli/admin.js'
import { loadConfig } from '../../src/config.js'
import { PASSWORD, TEST_DATABASE, TEST_ENV, bearer, buildTestApp, holdVerifications, login, refreshWithBody, until } from '../support/app.js'
import { fakeDate, HOUR, MINUTE } from '../support/clock.js'
import { count, rows } from '../support/db.js'
import { isVerificationMail, startSmtpSink, type ReceivedMail, type SmtpSink } from '../support/smtp.js'

const NEW_PASSWORD = 'a brand new passphrase for alice'
const LINK = /(http:\/\/localhost:3000\/account\/reset-password\?token=([A-Za-z0-9_-]{43}))/

function mailEnv (smtp: SmtpSink, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    MAIL_TRANSPORT: 'smtp',
    SMTP_URL: smtp.url,
    MAIL_FROM: 'Example <no-reply@example.test>',
    MAIL_PRODUCT_NAME: 'Example',
    MAIL_POLL_INTERVAL: '100ms',
    MAIL_RETRY_BASE: '50ms',
    MAIL_RETRY_MAX: '100ms',
    MAIL_SEND_TIMEOUT: '2s',
    PASSWORD_FORGOT_MIN_DURATION: '20ms',
    ...overrides
  }
}

async function setUp (t: Test, overrides: Record<string, string> = {}, options: Parameters<typeof buildTestApp>[2] = {}) {
  const smtp = await startSmtpSink(t, { ignore: isVerificationMail })
  const app = await buildTestApp(t, mailEnv(smtp, overrides), options)
  return { smtp, app }
}

async function registerWith (app: FastifyInstance, username: string, email?: string): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/api/auth/register', payload: { username, password: PASSWORD, ...(email === undefined ? {} : { email }) } })
  if (res.statusCode !== 201) throw new Error(res.body)
  return res.json().id
}

async function forgot (app: FastifyInstance, payload: Record<string, unknown>): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: '/api/auth/password/forgot', payload })
}

async function reset (app: FastifyInstance, token: string, newPassword = NEW_PASSWORD): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: '/api/auth/password/reset', payload: { token, newPassword } })
}

/** The link and token of a received reset message. */
function linkOf (mail: ReceivedMail): { link: string, token: string } {
  const m = LINK.exec(mail.text)
  if (m === null) throw new Error(`no reset link in: ${mail.text}`)
  return { link: m[1]!, token: m[2]! }
}

/** What a scanner does with a mailed link: GET and HEAD it (through the app, being under PUBLIC_URL). */
async function scan (t: Test, app: FastifyInstance, link: string): Promise<void> {
  const { pathname, search } = new URL(link)
  for (const method of ['GET', 'HEAD'] as const) {
    const res = await app.inject({ method, url: pathname + search })
    t.ok(res.statusCode < 500, `${method} of the link answers ${res.statusCode}`)
  }
}

/** Status, body and headers of an answer, without those that differ for every request. */
function visible (res: LightMyRequestResponse) {
  const { date: _date, 'x-request-id': _id, ...headers } = res.headers
  return { statusCode: res.statusCode, body: res.body, headers }
}

const liveSessions = async (app: FastifyInstance, userId: string): Promise<number> =>
  await count(app, 'SELECT count(*) FROM sessions WHERE user_id = ? AND revoked_at IS NULL', userId)

t.test('forgot → mail → GET and HEAD of the link spend nothing → reset: every session ends, the old password fails, the new one works, the owner is told', async (t) => {
  const { app, smtp } = await setUp(t)
  const userId = await registerWith(app, 'alice', 'Alice@example.test')
  const first = await login(app, { transport: 'body' })
  const second = await login(app, { transport: 'body' })

  const asked = await forgot(app, { email: 'alice@EXAMPLE.test' })
  t.equal(asked.statusCode, 202, asked.body)
  const [mail] = await smtp.waitFor(1)
  t.same(mail!.to, ['Alice@example.test'])
  t.match(mail!.header('subject'), /Reset your Example password/)
  t.match(mail!.text, /works for 30 minutes/)
  const { link, token } = linkOf(mail!)
  t.notOk(JSON.stringify(await rows(app, 'SELECT * FROM account_tokens')).includes(token), 'the token is not stored')

  await scan(t, app, link)
  await scan(t, app, link)
  const done = await reset(app, token)
  t.equal(done.statusCode, 204, done.body)
  t.equal(done.headers['cache-control'], 'no-store')

  t.equal((await refreshWithBody(app, first.refreshToken)).statusCode, 401, 'the first session ended')
  t.equal((await refreshWithBody(app, second.refreshToken)).statusCode, 401, 'the second session ended')
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(first.accessToken) })).statusCode, 401, 'its access token is refused')
  t.equal((await login(app)).res.statusCode, 401, 'the old password fails')
  t.equal((await login(app, { password: NEW_PASSWORD })).res.statusCode, 200, 'the new password works')

  const [, notice] = await smtp.waitFor(2)
  t.same(notice!.to, ['Alice@example.test'])
  t.match(notice!.header('subject'), /Your Example password was changed/)
  const events = (await app.repos.audit.list({ userId })).map((e) => e.type)
  t.ok(events.includes('password_reset_requested'), 'the request is audited')
  t.ok(events.includes('password_reset'), 'the reset is audited')
  t.equal(await count(app, "SELECT count(*) FROM account_tokens WHERE user_id = ? AND purpose = 'reset_password'", userId), 0, 'the token is spent')
})

t.test('forgot by username mails the account\'s address', async (t) => {
  const { app, smtp } = await setUp(t)
  await registerWith(app, 'bob', 'bob@example.test')
  t.equal((await forgot(app, { username: 'BOB' })).statusCode, 202)
  const [mail] = await smtp.waitFor(1)
  t.same(mail!.to, ['bob@example.test'])
  t.equal((await reset(app, linkOf(mail!).token)).statusCode, 204)
  t.equal((await login(app, { username: 'bob', password: NEW_PASSWORD })).res.statusCode, 200)
})

t.test('an unknown username or address, an account without an address, a disabled account: the same 202, body and headers, and no mail', async (t) => {
  const { app } = await setUp(t)
  await registerWith(app, 'alice', 'alice@example.test')
  await registerWith(app, 'noaddress')
  const disabledId = await registerWith(app, 'gone', 'gone@example.test')
  await app.repos.users.setDisabled(disabledId, true, new Date())

  const known = await forgot(app, { email: 'alice@example.test' })
  t.equal(known.statusCode, 202)
  for (const payload of [{ email: 'nobody@example.test' }, { username: 'nobody' }, { username: 'noaddress' }, { email: 'gone@example.test' }, { username: 'gone' }, { username: 'x'.repeat(256) }]) {
    t.same(visible(await forgot(app, payload)), visible(known), JSON.stringify(payload).slice(0, 40))
  }
  t.equal(await count(app, "SELECT count(*) FROM mail_outbox WHERE kind = 'password_reset'"), 1, 'only the known account with an address was sent a link')
  t.equal(await count(app, "SELECT count(*) FROM account_tokens WHERE purpose = 'reset_password'"), 1)
})

t.test('known and unknown accounts take the same time: every answer waits for PASSWORD_FORGOT_MIN_DURATION', async (t) => {
  const FLOOR = 300
  // Without the per-account limit, every request for the known account does the whole work.
  const { app } = await setUp(t, { PASSWORD_FORGOT_MIN_DURATION: `${FLOOR}ms`, RATE_LIMIT_PASSWORD_RESET_MAILS_PER_USER_MAX: '1000' })
  await registerWith(app, 'alice', 'alice@example.test')
  await forgot(app, { email: 'warm-up@example.test' })
  const times: Record<'known' | 'unknown', number[]> = { known: [], unknown: [] }
  for (let i = 0; i < 20; i++) {
    for (const [kind, email] of [['known', 'alice@example.test'], ['unknown', `nobody${i}@example.test`]] as const) {
      const started = performance.now()
      const res = await forgot(app, { email })
      times[kind].push(performance.now() - started)
      t.equal(res.statusCode, 202)
    }
  }
  t.equal(await count(app, "SELECT count(*) FROM mail_outbox WHERE kind = 'password_reset'"), 20, 'every request for the known account did the work')
  const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return (s[9]! + s[10]!) / 2 }
  const [known, unknown] = [median(times.known), median(times.unknown)]
  t.comment(`medians: known ${known.toFixed(1)} ms, unknown ${unknown.toFixed(1)} ms, floor ${FLOOR} ms`)
  // The floor is a lower bound of every answer (a timer never fires early); the medians are
  // compared with each other, relative to the floor.
  t.ok(Math.min(...times.known, ...times.unknown) >= FLOOR - 1, 'no answer came before the floor')
  t.ok(Math.abs(known - unknown) < FLOOR * 0.25, `the medians differ by less than a quarter of the floor (${Math.abs(known - unknown).toFixed(1)} ms)`)
})

t.test('forgot needs exactly one of email and username (400); without mail it answers 503 MAIL_DISABLED whatever the body', async (t) => {
  const { app } = await setUp(t)
  for (const payload of [{}, { email: 'a@example.test', username: 'alice' }]) {
    const res = await forgot(app, payload)
    t.equal(res.statusCode, 400)
    t.equal(res.json().code, 'VALIDATION_FAILED')
  }
  const off = await buildTestApp(t)
  await registerWith(off, 'alice', 'alice@example.test')
  for (const payload of [{ email: 'alice@example.test' }, { username: 'nobody' }, {}, { bogus: 1 }]) {
    const res = await forgot(off, payload)
    t.equal(res.statusCode, 503, JSON.stringify(payload))
    t.same(res.json(), { statusCode: 503, code: 'MAIL_DISABLED', message: 'This service does not send mail' })
    t.ok(res.headers['retry-after'], 'a 503 carries Retry-After')
  }
})

t.test('a link works once; anything that is not a live token is 400 ACCOUNT_TOKEN_INVALID', async (t) => {
  const { app, smtp } = await setUp(t)
  await registerWith(app, 'alice', 'alice@example.test')
  await forgot(app, { username: 'alice' })
  const { token } = linkOf((await smtp.waitFor(1))[0]!)
  t.equal((await reset(app, token)).statusCode, 204)
  const again = await reset(app, token, 'yet another passphrase here')
  t.equal(again.statusCode, 400)
  t.same(again.json(), { statusCode: 400, code: 'ACCOUNT_TOKEN_INVALID', message: 'This link is invalid or has expired' })
  for (const bad of ['x', token.slice(1), `${token.slice(0, -1)}A`, 'a'.repeat(128)]) {
    t.equal((await reset(app, bad)).json().code, 'ACCOUNT_TOKEN_INVALID', bad)
  }
  t.equal((await login(app, { password: NEW_PASSWORD })).res.statusCode, 200, 'the first reset stands')
})

t.test('a weak new password is refused with WEAK_PASSWORD and the link stays usable', async (t) => {
  const { app, smtp } = await setUp(t)
  await registerWith(app, 'alice', 'alice@example.test')
  await forgot(app, { username: 'alice' })
  const { token } = linkOf((await smtp.waitFor(1))[0]!)
  for (const weak of ['short', 'password1234']) {
    const res = await reset(app, token, weak)
    t.equal(res.statusCode, 400)
    t.equal(res.json().code, 'WEAK_PASSWORD')
  }
  t.equal((await login(app)).res.statusCode, 200, 'the password is unchanged')
  t.equal((await reset(app, token)).statusCode, 204, 'the link still works')
})

t.test('a link expires after PASSWORD_RESET_TTL', async (t) => {
  const { app, smtp } = await setUp(t, { PASSWORD_RESET_TTL: '10m' })
  const clock = fakeDate(t, Date.now(), { running: true })
  await registerWith(app, 'alice', 'alice@example.test')
  await forgot(app, { username: 'alice' })
  const [mail] = await smtp.waitFor(1)
  t.match(mail!.text, /works for 10 minutes/)
  clock.advance(10 * MINUTE)
  t.equal((await reset(app, linkOf(mail!).token)).json().code, 'ACCOUNT_TOKEN_INVALID')
  t.equal((await login(app)).res.statusCode, 200, 'the password is unchanged')
})

t.test('an older link is void once a newer one is sent', async (t) => {
  const { app, smtp } = await setUp(t)
  await registerWith(app, 'alice', 'alice@example.test')
  await forgot(app, { username: 'alice' })
  await forgot(app, { email: 'alice@example.test' })
  const [older, newer] = await smtp.waitFor(2)
  t.equal((await reset(app, linkOf(older!).token)).json().code, 'ACCOUNT_TOKEN_INVALID')
  t.equal((await reset(app, linkOf(newer!).token)).statusCode, 204)
})

t.test('a link is void once the password was changed by POST /password', async (t) => {
  const { app, smtp } = await setUp(t)
  await registerWith(app, 'alice', 'alice@example.test')
  await forgot(app, { username: 'alice' })
  const { token } = linkOf((await smtp.waitFor(1))[0]!)
  const session = await login(app, { transport: 'body' })
  const changed = await app.inject({ method: 'POST', url: '/api/auth/password', headers: bearer(session.accessToken), payload: { currentPassword: PASSWORD, newPassword: 'changed by the owner today' } })
  t.equal(changed.statusCode, 204)
  t.equal((await reset(app, token)).json().code, 'ACCOUNT_TOKEN_INVALID')
  t.equal((await login(app, { password: 'changed by the owner today' })).res.statusCode, 200, 'the owner\'s change stands')
})

t.test('a link of an account disabled after it was sent is void', async (t) => {
  const { app, smtp } = await setUp(t)
  const userId = await registerWith(app, 'alice', 'alice@example.test')
  await forgot(app, { username: 'alice' })
  const { token } = linkOf((await smtp.waitFor(1))[0]!)
  await app.repos.users.setDisabled(userId, true, new Date())
  t.equal((await reset(app, token)).json().code, 'ACCOUNT_TOKEN_INVALID')
  await app.repos.users.setDisabled(userId, false, new Date())
  t.equal((await login(app)).res.statusCode, 200, 'the password is unchanged')
})

t.test('two resets with one link at once: exactly one wins', async (t) => {
  const { app, smtp } = await setUp(t)
  await registerWith(app, 'alice', 'alice@example.test')
  await forgot(app, { username: 'alice' })
  const { token } = linkOf((await smtp.waitFor(1))[0]!)
  const passwords = ['first racer passphrase', 'second racer passphrase']
  const answers = await Promise.all(passwords.map(async (p) => await reset(app, token, p)))
  t.same(answers.map((a) => a.statusCode).sort(), [204, 400])
  const winner = passwords[answers.findIndex((a) => a.statusCode === 204)]!
  const loser = passwords.find((p) => p !== winner)!
  t.equal((await login(app, { password: winner })).res.statusCode, 200)
  t.equal((await login(app, { password: loser })).res.statusCode, 401)
  await until(() => smtp.messages.length >= 2)
  t.equal(await count(app, "SELECT count(*) FROM mail_outbox WHERE kind = 'password_changed'"), 1, 'one notice')
})

t.test('a login whose old password was checked before the reset committed starts no session after it', async (t) => {
  const { app, smtp } = await setUp(t)
  const userId = await registerWith(app, 'alice', 'alice@example.test')
  await forgot(app, { username: 'alice' })
  const { token } = linkOf((await smtp.waitFor(1))[0]!)
  const hold = holdVerifications(app)
  const logins = [1, 2, 3].map(async () => await login(app, { transport: 'body' }))
  await hold.reached(3)
  t.equal((await reset(app, token)).statusCode, 204)
  hold.release()
  for (const l of await Promise.all(logins)) t.not(l.res.statusCode, 200, 'the login checked against the old password is refused')
  t.equal(await liveSessions(app, userId), 0)
})

t.test('a reset, logins with the old password and a password change at once: no session of the old password survives the reset', async (t) => {
  const { app, smtp } = await setUp(t)
  const userId = await registerWith(app, 'alice', 'alice@example.test')
  await forgot(app, { username: 'alice' })
  const { token } = linkOf((await smtp.waitFor(1))[0]!)
  const owner = await login(app, { transport: 'body' })
  const [resetAnswer, changeAnswer, ...logins] = await Promise.all([
    reset(app, token),
    app.inject({ method: 'POST', url: '/api/auth/password', headers: bearer(owner.accessToken), payload: { currentPassword: PASSWORD, newPassword: 'changed by the owner today' } }),
    ...[1, 2, 3, 4].map(async () => (await login(app, { transport: 'body' })).res)
  ])
  t.comment(`reset ${resetAnswer!.statusCode}, change ${changeAnswer!.statusCode}, logins ${logins.map((l) => l.statusCode).join(' ')}`)
  if (resetAnswer!.statusCode === 204) {
    // Every session here was started with the old password: none is left.
    t.equal(await liveSessions(app, userId), 0)
    t.equal(changeAnswer!.statusCode, 401, 'the change checked against the old password is overtaken')
    t.equal((await login(app, { password: NEW_PASSWORD })).res.statusCode, 200)
  } else {
    t.equal(resetAnswer!.json().code, 'ACCOUNT_TOKEN_INVALID', 'the change came first and voided the link')
    t.equal(changeAnswer!.statusCode, 204)
    t.equal((await login(app, { password: 'changed by the owner today' })).res.statusCode, 200)
  }
  t.equal((await login(app)).res.statusCode, 401, 'the old password is gone either way')
})

t.test('per account: RATE_LIMIT_PASSWORD_RESET_MAILS_PER_USER_MAX links per window, then the same 202 and no mail', async (t) => {
  const { app } = await setUp(t)
  const clock = fakeDate(t, Date.now(), { running: true })
  const userId = await registerWith(app, 'alice', 'alice@example.test')
  await registerWith(app, 'bob', 'bob@example.test')
  const answers = []
  for (let i = 0; i < 5; i++) answers.push(visible(await forgot(app, i % 2 === 0 ? { username: 'alice' } : { email: 'alice@example.test' })))
  t.same(new Set(answers.map((a) => JSON.stringify(a))).size, 1, 'five identical answers')
  const mailsTo = async (to: string) => await count(app, "SELECT count(*) FROM mail_outbox WHERE kind = 'password_reset' AND recipient = ?", to)
  t.equal(await mailsTo('alice@example.test'), 3, 'three links (the default limit)')
  t.equal((await forgot(app, { username: 'bob' })).statusCode, 202)
  t.equal(await mailsTo('bob@example.test'), 1, 'another account has its own budget')
  clock.advance(HOUR)
  await forgot(app, { username: 'alice' })
  t.equal(await mailsTo('alice@example.test'), 4, 'a window later, another link')
  t.equal(await count(app, "SELECT count(*) FROM audit_events WHERE type = 'password_reset_requested' AND user_id = ?", userId), 4)
})

t.test('per client address: RATE_LIMIT_PASSWORD_FORGOT_MAX requests, then 429 with Retry-After', async (t) => {
  const { app } = await setUp(t, { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_PASSWORD_FORGOT_MAX: '2', RATE_LIMIT_PASSWORD_RESET_MAX: '2' })
  t.equal((await forgot(app, { username: 'a' })).statusCode, 202)
  t.equal((await forgot(app, { username: 'b' })).statusCode, 202)
  const limited = await forgot(app, { username: 'c' })
  t.equal(limited.statusCode, 429)
  t.equal(limited.json().code, 'RATE_LIMITED')
  t.ok(limited.headers['retry-after'])
  t.equal((await reset(app, 'x')).statusCode, 400)
  t.equal((await reset(app, 'y')).statusCode, 400)
  t.equal((await reset(app, 'z')).statusCode, 429, 'reset has its own per-address limit')
})

t.test('SMTP down when the link is asked for: 202, and the mail arrives once SMTP is back, exactly once', async (t) => {
  const { app, smtp } = await setUp(t)
  await registerWith(app, 'alice', 'alice@example.test')
  await smtp.stop()
  t.equal((await forgot(app, { username: 'alice' })).statusCode, 202)
  await until(async () => (await rows<{ attempts: number }>(app, "SELECT attempts FROM mail_outbox WHERE kind = 'password_reset'"))[0]!.attempts >= 2)
  await smtp.start()
  await smtp.waitFor(1)
  await until(async () => (await rows<{ state: string }>(app, "SELECT state FROM mail_outbox WHERE kind = 'password_reset'"))[0]!.state === 'sent')
  t.equal(smtp.messages.length, 1, 'delivered once')
  t.equal((await reset(app, linkOf(smtp.messages[0]!).token)).statusCode, 204, 'and its link works')
})

t.test('neither the token nor the new password reaches the log', async (t) => {
  let log = ''
  const logStream = new Writable({ write (chunk: Buffer, _enc, done) { log += chunk.toString(); done() } })
  const { app, smtp } = await setUp(t, { LOG_LEVEL: 'trace' }, { logStream })
  await registerWith(app, 'alice', 'alice@example.test')
  await forgot(app, { username: 'alice' })
  const { token } = linkOf((await smtp.waitFor(1))[0]!)
  t.equal((await reset(app, token, 'short')).statusCode, 400)
  t.equal((await reset(app, token)).statusCode, 204)
  await smtp.waitFor(2)
  t.match(log, /password reset/, 'the log was captured')
  t.notOk(log.includes(token), 'no token in the log')
  t.notOk(log.includes(NEW_PASSWORD), 'no password in the log')
})

t.test('an administrator sends a reset link; never sees or sets the password; no per-account limit', async (t) => {
  const { app, smtp } = await setUp(t)
  const adminId = await registerWith(app, 'root', 'root@example.test')
  await app.repos.users.setRoles(adminId, ['admin', 'user'], new Date())
  const admin = bearer((await login(app, { username: 'root', transport: 'body' })).accessToken)
  const userId = await registerWith(app, 'alice', 'alice@example.test')
  await registerWith(app, 'noaddress')
  const disabledId = await registerWith(app, 'gone', 'gone@example.test')
  await app.repos.users.setDisabled(disabledId, true, new Date())
  const send = async (user: string, headers = admin) => await app.inject({ method: 'POST', url: `/api/admin/users/${encodeURIComponent(user)}/password-reset`, headers })

  for (let i = 0; i < 4; i++) {
    const res = await send(`name:alice`)
    t.equal(res.statusCode, 202, res.body)
    t.same(res.json(), { message: 'A link to reset the password was mailed to the user' }, 'nothing about the password')
  }
  const mails = await smtp.waitFor(4)
  t.same(mails.map((m) => m.to[0]), Array(4).fill('alice@example.test'))
  await scan(t, app, linkOf(mails[3]!).link)
  t.equal((await reset(app, linkOf(mails[3]!).token)).statusCode, 204, 'the newest link works')
  const [event] = await app.repos.audit.list({ userId, type: 'password_reset_triggered', limit: 1 })
  t.match(event?.detail, { by: adminId }, 'the audit names the administrator')

  t.equal((await send(`id:${userId}`)).statusCode, 202)
  t.same((await send('name:noaddress')).json(), { statusCode: 409, code: 'NO_EMAIL', message: 'This account has no e-mail address' })
  t.equal((await send('name:gone')).json().code, 'USER_DISABLED')
  t.equal((await send('name:nobody')).statusCode, 404)
  const user = bearer((await login(app, { password: NEW_PASSWORD, transport: 'body' })).accessToken)
  t.equal((await send('name:root', user)).statusCode, 403, 'not for non-administrators')
})

t.test('without mail the admin endpoint answers 503 MAIL_DISABLED', async (t) => {
  const app = await buildTestApp(t)
  const adminId = await registerWith(app, 'root', 'root@example.test')
  await app.repos.users.setRoles(adminId, ['admin'], new Date())
  const admin = bearer((await login(app, { username: 'root', transport: 'body' })).accessToken)
  const res = await app.inject({ method: 'POST', url: '/api/admin/users/name:root/password-reset', headers: admin })
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'MAIL_DISABLED')
})

t.test('admin CLI: reset-password <user> writes the link to the outbox, which the running service delivers', async (t) => {
  const smtp = await startSmtpSink(t, { ignore: isVerificationMail })
  const env = mailEnv(smtp)
  const app = await buildTestApp(t, TEST_DATABASE === 'postgres' ? env : { ...env, DATABASE_URL: `file:${t.testdir()}/auth.db` })
  const userId = await registerWith(app, 'alice', 'alice@example.test')
  await registerWith(app, 'noaddress')
  const run = async (argv: string[], extra: Record<string, string> = {}) => {
    const out: string[] = []
    const code = await runAdminCommand(argv, { env: { ...TEST_ENV, ...env, DATABASE_URL: app.config.databaseUrl, ...extra }, stdout: (s) => { out.push(s) }, stderr: (s) => { out.push(s) } })
    return { code, out: out.join('\n') }
  }
  const sent = await run(['reset-password', 'name:alice'])
  t.equal(sent.code, 0, sent.out)
  t.match(sent.out, /password-reset link for alice is in the outbox/)
  const [mail] = await smtp.waitFor(1)
  t.same(mail!.to, ['alice@example.test'])
  await scan(t, app, linkOf(mail!).link)
  t.equal((await reset(app, linkOf(mail!).token)).statusCode, 204)
  const [event] = await app.repos.audit.list({ userId, type: 'password_reset_triggered', limit: 1 })
  t.match(event?.detail, { by: 'cli' })

  t.match(await run(['reset-password', 'name:noaddress']), { code: 1, out: /has no e-mail address/ })
  t.match(await run(['reset-password', 'name:nobody']), { code: 1 })
  t.match(await run(['reset-password', 'alice']), { code: 64 })
  t.match(await run(['reset-password', 'name:alice'], { MAIL_TRANSPORT: '', SMTP_URL: '', MAIL_FROM: '' }), { code: 1, out: /MAIL_TRANSPORT is not set/ })
})

t.test('settings: PASSWORD_RESET_TTL, PASSWORD_FORGOT_MIN_DURATION and the limits, with errors that name them', async (t) => {
  const defaults = loadConfig(TEST_ENV)
  t.same(defaults.passwordReset, { ttl: 1800, forgotMinDurationMs: 250 })
  t.same(defaults.rateLimit.passwordResetMailsPerUser, { max: 3, windowSeconds: 3600 })
  t.same(loadConfig({ ...TEST_ENV, PASSWORD_RESET_TTL: '1h', PASSWORD_FORGOT_MIN_DURATION: '1s' }).passwordReset, { ttl: 3600, forgotMinDurationMs: 1000 })
  t.throws(() => loadConfig({ ...TEST_ENV, PASSWORD_RESET_TTL: 'soon' }), /^PASSWORD_RESET_TTL: /)
  t.throws(() => loadConfig({ ...TEST_ENV, PASSWORD_FORGOT_MIN_DURATION: '1m' }), /^PASSWORD_FORGOT_MIN_DURATION: '1m' is not allowed/)
  t.throws(() => loadConfig({ ...TEST_ENV, RATE_LIMIT_PASSWORD_RESET_MAILS_PER_USER_MAX: '0' }), /^RATE_LIMIT_PASSWORD_RESET_MAILS_PER_USER_MAX: /)
  t.throws(() => loadConfig({ ...TEST_ENV, AUDIT_RETENTION: '30m' }), /AUDIT_RETENTION must be at least RATE_LIMIT_PASSWORD_RESET_MAILS_PER_USER_WINDOW/)
})
