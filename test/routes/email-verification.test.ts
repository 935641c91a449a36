/**
 * E-mail verification over HTTP, with mail through a real SMTP server on loopback: the link is
 * read from the received message, fetched with GET and HEAD first (as a mail scanner would:
 * that spends nothing), then completed by the page's POST. Also: reuse, expiry, a token for an
 * address the account no longer has, the re-send endpoint and its limits,
 * REQUIRE_EMAIL_VERIFICATION (login 403 only after the password is right) and the silent
 * registration of a taken address. Runs on SQLite and, with TEST_DATABASE=postgres, on
 * PostgreSQL.
 */
import { createHash } from 'node:crypto'
import { Writable } from 'node:stream'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { loadConfig } from '../../src/config.js'
import { PASSWORD, TEST_ENV, bearer, buildTestApp, refreshWithBody } from '../support/app.js'
import { fakeDate, HOUR, SECOND } from '../support/clock.js'
import { count, rows } from '../support/db.js'
import { decodeJwt } from '../support/jwt.js'
import { queryPostgres } from '../support/pg.js'
import { startSmtpSink, type ReceivedMail, type SmtpSink } from '../support/smtp.js'

const MAIL_ENV = { MAIL_TRANSPORT: 'smtp', MAIL_FROM: 'Example <no-reply@example.test>', MAIL_PRODUCT_NAME: 'Example' }

async function setUp (t: Test, env: Record<string, string> = {}, logs?: string[]): Promise<{ app: FastifyInstance, smtp: SmtpSink }> {
  const smtp = await startSmtpSink(t)
  const logStream = logs === undefined ? undefined : new Writable({ write (chunk: Buffer, _enc, cb) { logs.push(chunk.toString('utf8')); cb() } })
  const app = await buildTestApp(t, { ...MAIL_ENV, SMTP_URL: smtp.url, ...env }, logStream === undefined ? {} : { logStream })
  return { app, smtp }
}

async function registerWith (app: FastifyInstance, username: string, email?: string, ip?: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: '/api/auth/register', payload: { username, password: PASSWORD, ...(email === undefined ? {} : { email }) }, ...(ip === undefined ? {} : { remoteAddress: ip }) })
}

async function loginAs (app: FastifyInstance, username: string, password = PASSWORD): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username, password, transport: 'body' } })
}

/** The link to `page` in the message's text part: PUBLIC_URL (no APP_URL here) + the page + the token. */
function linkIn (t: Test, mail: ReceivedMail, page: string): { path: string, token: string } {
  const m = new RegExp(`http://localhost:3000(${page}\\?token=([A-Za-z0-9_-]{43}))`).exec(mail.text)
  t.ok(m, `a link to ${page} in: ${mail.text}`)
  return { path: m?.[1] ?? '', token: m?.[2] ?? '' }
}

/** What a mail scanner does: GET and HEAD the link. Both answer the page and spend nothing. */
async function scan (t: Test, app: FastifyInstance, path: string): Promise<void> {
  for (const method of ['GET', 'HEAD'] as const) {
    const res = await app.inject({ method, url: path })
    t.equal(res.statusCode, 200, `${method} ${path}`)
    t.match(res.headers['content-type'], /^text\/html/)
    t.equal(res.headers['cache-control'], 'no-store')
    t.equal(res.headers['referrer-policy'], 'no-referrer')
    t.equal(res.headers['x-robots-tag'], 'noindex')
    t.match(res.headers['content-security-policy'], /default-src 'none'/)
    if (method === 'HEAD') t.equal(res.body, '', 'HEAD has no body')
  }
}

async function verify (app: FastifyInstance, token: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: '/api/auth/email/verify', payload: { token } })
}

const INVALID = { statusCode: 400, code: 'ACCOUNT_TOKEN_INVALID', message: 'This link is invalid or has expired' }

t.test('register → mail at SMTP → GET and HEAD of the link spend nothing → POST verifies → /me and refreshed tokens say verified; the token is spent', async (t) => {
  const logs: string[] = []
  const { app, smtp } = await setUp(t, { LOG_LEVEL: 'info' }, logs)
  const reg = await registerWith(app, 'alice', 'alice@example.test')
  t.equal(reg.statusCode, 201, reg.body)
  const [mail] = await smtp.waitFor(1)
  t.same(mail!.to, ['alice@example.test'])
  t.match(mail!.header('subject'), /Confirm your e-mail address for Example/)
  const { path, token } = linkIn(t, mail!, '/account/verify-email')

  const session = (await loginAs(app, 'alice')).json() as { accessToken: string, refreshToken: string }
  t.equal(decodeJwt(session.accessToken).payload.email_verified, false)

  await scan(t, app, path)
  await scan(t, app, path)
  t.match((await app.inject({ url: '/api/auth/me', headers: bearer(session.accessToken) })).json(), { emailVerified: false }, 'opening the link verified nothing')

  const res = await verify(app, token)
  t.equal(res.statusCode, 204, res.body)
  t.equal(res.body, '')
  t.match((await app.inject({ url: '/api/auth/me', headers: bearer(session.accessToken) })).json(), { email: 'alice@example.test', emailVerified: true })
  const refreshed = await refreshWithBody(app, session.refreshToken)
  t.equal(refreshed.statusCode, 200)
  t.equal(decodeJwt(refreshed.json().accessToken).payload.email_verified, true, 'tokens issued after carry email_verified true')

  const again = await verify(app, token)
  t.equal(again.statusCode, 400)
  t.same(again.json(), INVALID, 'a spent token')
  t.equal(await count(app, "SELECT count(*) FROM audit_events WHERE type = 'email_verified' AND user_id = ?", reg.json().id), 1)

  t.notOk(logs.join('').includes(token), 'the token is never logged')
})

t.test('two concurrent uses of one token: one verifies, the other answers 400', async (t) => {
  const { app, smtp } = await setUp(t)
  const reg = await registerWith(app, 'zoe', 'zoe@example.test')
  const { token } = linkIn(t, (await smtp.waitFor(1))[0]!, '/account/verify-email')
  const answers = await Promise.all([verify(app, token), verify(app, token)])
  t.same(answers.map((r) => r.statusCode).sort(), [204, 400])
  t.equal(await count(app, "SELECT count(*) FROM audit_events WHERE type = 'email_verified' AND user_id = ?", reg.json().id), 1, 'one verification recorded')
})

t.test('an unknown or malformed token answers the one ACCOUNT_TOKEN_INVALID; a body without a token is a validation error', async (t) => {
  const { app } = await setUp(t)
  for (const token of ['x'.repeat(43), 'short', 'A'.repeat(42) + '=']) {
    const res = await verify(app, token)
    t.equal(res.statusCode, 400)
    t.same(res.json(), INVALID, token)
  }
  const missing = await app.inject({ method: 'POST', url: '/api/auth/email/verify', payload: {} })
  t.equal(missing.statusCode, 400)
  t.equal(missing.json().code, 'VALIDATION_FAILED')
})

t.test('an expired verification token answers 400 and verifies nothing', async (t) => {
  const clock = fakeDate(t, Date.now(), { running: true })
  const { app, smtp } = await setUp(t, { EMAIL_VERIFICATION_TTL: '1h' })
  const reg = await registerWith(app, 'bob', 'bob@example.test')
  const { token } = linkIn(t, (await smtp.waitFor(1))[0]!, '/account/verify-email')
  clock.advance(HOUR + SECOND)
  t.same((await verify(app, token)).json(), INVALID)
  const [user] = await rows<{ verified: unknown }>(app, 'SELECT email_verified_at AS verified FROM users WHERE id = ?', reg.json().id)
  t.equal(user?.verified, null)
})

t.test('a token for an address the account no longer has answers 400 and verifies nothing', async (t) => {
  const { app, smtp } = await setUp(t)
  const reg = await registerWith(app, 'carol', 'carol@example.test')
  const { token } = linkIn(t, (await smtp.waitFor(1))[0]!, '/account/verify-email')
  // The address changes after the token was mailed (as an address change would).
  if (app.database.kind === 'sqlite') app.sqlite.prepare("UPDATE users SET email = 'carol2@example.test', email_key = 'carol2@example.test' WHERE id = ?").run(reg.json().id)
  else await queryPostgres(app.config.databaseUrl, "UPDATE users SET email = 'carol2@example.test', email_key = 'carol2@example.test' WHERE id = $1", [reg.json().id])
  t.same((await verify(app, token)).json(), INVALID)
  const [user] = await rows<{ verified: unknown }>(app, 'SELECT email_verified_at AS verified FROM users WHERE id = ?', reg.json().id)
  t.equal(user?.verified, null)
})

t.test('POST /email/verification: 202 with no body and a new link that voids the older; 409 NO_EMAIL, 409 EMAIL_ALREADY_VERIFIED', async (t) => {
  const { app, smtp } = await setUp(t)
  await registerWith(app, 'dave', 'dave@example.test')
  const first = linkIn(t, (await smtp.waitFor(1))[0]!, '/account/verify-email')
  const { accessToken } = (await loginAs(app, 'dave')).json() as { accessToken: string }
  const resend = await app.inject({ method: 'POST', url: '/api/auth/email/verification', headers: bearer(accessToken) })
  t.equal(resend.statusCode, 202, resend.body)
  t.equal(resend.body, '')
  const second = linkIn(t, (await smtp.waitFor(2))[1]!, '/account/verify-email')
  t.not(second.token, first.token)
  t.same((await verify(app, first.token)).json(), INVALID, 'the older link is void')
  await scan(t, app, second.path)
  t.equal((await verify(app, second.token)).statusCode, 204)

  const verified = await app.inject({ method: 'POST', url: '/api/auth/email/verification', headers: bearer(accessToken) })
  t.equal(verified.statusCode, 409)
  t.same(verified.json(), { statusCode: 409, code: 'EMAIL_ALREADY_VERIFIED', message: 'This e-mail address is already verified' })

  await registerWith(app, 'erin')
  const { accessToken: noAddress } = (await loginAs(app, 'erin')).json() as { accessToken: string }
  const none = await app.inject({ method: 'POST', url: '/api/auth/email/verification', headers: bearer(noAddress) })
  t.equal(none.statusCode, 409)
  t.same(none.json(), { statusCode: 409, code: 'NO_EMAIL', message: 'This account has no e-mail address' })
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/email/verification' })).statusCode, 401, 'Bearer required')
  t.equal(smtp.messages.length, 2, 'no mail for the refused requests')
})

t.test('POST /email/verification without MAIL_TRANSPORT answers 503 MAIL_DISABLED; registration with an address then sends nothing', async (t) => {
  const app = await buildTestApp(t)
  t.equal((await registerWith(app, 'frank', 'frank@example.test')).statusCode, 201)
  t.equal(await count(app, 'SELECT count(*) FROM account_tokens'), 0)
  const { accessToken } = (await loginAs(app, 'frank')).json() as { accessToken: string }
  const res = await app.inject({ method: 'POST', url: '/api/auth/email/verification', headers: bearer(accessToken) })
  t.equal(res.statusCode, 503)
  t.same(res.json(), { statusCode: 503, code: 'MAIL_DISABLED', message: 'This service does not send mail' })
  t.ok(Number(res.headers['retry-after']) > 0, 'a 503 says when to retry')
})

t.test('the re-send is limited per account, from any number of client addresses', async (t) => {
  const { app, smtp } = await setUp(t, { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_EMAIL_VERIFICATION_PER_ACCOUNT_MAX: '2', RATE_LIMIT_EMAIL_VERIFICATION_PER_ACCOUNT_WINDOW: '1h' })
  await registerWith(app, 'gina', 'gina@example.test')
  await registerWith(app, 'hank', 'hank@example.test')
  await smtp.waitFor(2)
  const gina = (await loginAs(app, 'gina')).json().accessToken as string
  const hank = (await loginAs(app, 'hank')).json().accessToken as string
  const resend = async (token: string, ip: string) => await app.inject({ method: 'POST', url: '/api/auth/email/verification', headers: bearer(token), remoteAddress: ip })
  t.equal((await resend(gina, '10.0.0.1')).statusCode, 202)
  t.equal((await resend(gina, '10.0.0.2')).statusCode, 202)
  const third = await resend(gina, '10.0.0.3')
  t.equal(third.statusCode, 429)
  t.equal(third.json().code, 'RATE_LIMITED')
  t.ok(Number(third.headers['retry-after']) > 0, 'Retry-After says when')
  t.equal((await resend(hank, '10.0.0.3')).statusCode, 202, 'another account is not held back')
  await smtp.waitFor(5)
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(smtp.messages.length, 5, 'no mail for the refused request')
})

t.test('REQUIRE_EMAIL_VERIFICATION needs MAIL_TRANSPORT: the error names both', async (t) => {
  t.throws(() => loadConfig({ ...TEST_ENV, REQUIRE_EMAIL_VERIFICATION: 'true' }), /REQUIRE_EMAIL_VERIFICATION=true needs MAIL_TRANSPORT/)
})

t.test('REQUIRE_EMAIL_VERIFICATION: an address is required; login is 403 EMAIL_NOT_VERIFIED only after the right password, re-sends nothing, and succeeds once verified', async (t) => {
  const { app, smtp } = await setUp(t, { REQUIRE_EMAIL_VERIFICATION: 'true' })
  const without = await registerWith(app, 'ivan')
  t.equal(without.statusCode, 400)
  t.same(without.json(), { statusCode: 400, code: 'INVALID_EMAIL', message: 'An e-mail address is required' })

  t.equal((await registerWith(app, 'judy', 'judy@example.test')).statusCode, 201)
  const { path, token } = linkIn(t, (await smtp.waitFor(1))[0]!, '/account/verify-email')
  const wrong = await loginAs(app, 'judy', 'not the password at all')
  t.equal(wrong.statusCode, 401, 'a wrong password is the usual 401')
  t.equal(wrong.json().code, 'INVALID_CREDENTIALS')
  const before = await loginAs(app, 'judy')
  t.equal(before.statusCode, 403)
  t.same(before.json(), { statusCode: 403, code: 'EMAIL_NOT_VERIFIED', message: 'Verify your e-mail address before logging in' })
  t.equal(before.cookies.length, 0, 'no session')
  const byAddress = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: 'judy@example.test', password: PASSWORD, transport: 'body' } })
  t.equal(byAddress.statusCode, 403, 'by address too')
  t.equal(await count(app, 'SELECT count(*) FROM mail_outbox'), 1, 'the refused logins sent nothing')
  t.equal(await count(app, 'SELECT count(*) FROM sessions'), 0)

  await scan(t, app, path)
  t.equal((await verify(app, token)).statusCode, 204)
  const after = await loginAs(app, 'judy')
  t.equal(after.statusCode, 200, after.body)
  t.equal(decodeJwt(after.json().accessToken).payload.email_verified, true)
})

t.test('REQUIRE_EMAIL_VERIFICATION: a taken address answers as a new registration, the owner is told by mail, nothing is created; a taken username is still 409', async (t) => {
  const { app, smtp } = await setUp(t, { REQUIRE_EMAIL_VERIFICATION: 'true' })
  // Same lengths, so that even Content-Length must agree.
  const fresh = await registerWith(app, 'kate', 'kate@example.test')
  const taken = await registerWith(app, 'liam', 'KATE@example.test')
  t.equal(taken.statusCode, fresh.statusCode)
  t.equal(taken.statusCode, 201)
  const a = fresh.json() as Record<string, unknown>
  const b = taken.json() as Record<string, unknown>
  t.same(Object.keys(b), Object.keys(a), 'same body shape')
  t.match(b, { username: 'liam', email: 'KATE@example.test', emailVerified: false, roles: ['user'] })
  t.match(b.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a fresh random id')
  t.not(b.id, a.id)
  const headers = (res: LightMyRequestResponse): Record<string, unknown> => {
    const { date: _date, 'x-request-id': _id, ...rest } = res.headers
    return rest
  }
  t.same(headers(taken), headers(fresh), 'same headers')

  const mails = await smtp.waitFor(2)
  const notice = mails.find((m) => m.header('subject') === 'Your Example account')
  t.ok(notice, 'the owner gets account_exists')
  t.same(notice?.to, ['kate@example.test'], 'at the address of the account')
  t.match(notice?.text, /http:\/\/localhost:3000\/account\/reset-password\r?\n/)
  t.notMatch(notice?.text, /token=/, 'the notice carries no token')
  t.equal(await count(app, 'SELECT count(*) FROM users'), 1, 'no second account')
  t.equal(await count(app, "SELECT count(*) FROM users WHERE username = 'liam'"), 0)
  t.equal((await loginAs(app, 'liam')).statusCode, 401)
  t.equal(await count(app, "SELECT count(*) FROM audit_events WHERE type = 'register_address_taken' AND user_id = ?", a.id), 1)

  const name = await registerWith(app, 'kate', 'other@example.test')
  t.equal(name.statusCode, 409)
  t.equal(name.json().code, 'USERNAME_TAKEN', 'usernames are public handles')
})

t.test('the account pages answer GET and HEAD with the page, its headers, and a CSP that allows exactly its inline script', async (t) => {
  const app = await buildTestApp(t)
  const pages = {
    '/account/verify-email?token=abc': 'email/verify',
    '/account/confirm-email?token=abc': 'email/confirm',
    '/account/undo-email-change?token=abc': 'email/confirm',
    '/account/reset-password?token=abc': 'password/reset',
    '/account/reset-password': 'password/forgot'
  }
  for (const [url, endpoint] of Object.entries(pages)) {
    await scan(t, app, url)
    const res = await app.inject({ url })
    t.match(res.body, `data-endpoint="${endpoint}"`, url)
    const csp = res.headers['content-security-policy'] as string
    for (const tag of ['script', 'style']) {
      const inline = new RegExp(`<${tag}>([^]*?)</${tag}>`).exec(res.body)?.[1] ?? ''
      const hash = createHash('sha256').update(inline, 'utf8').digest('base64')
      t.match(csp, `${tag}-src 'sha256-${hash}'`, `${url}: the ${tag} is allowed by its hash`)
    }
    t.match(csp, "connect-src 'self'")
    t.match(csp, "frame-ancestors 'none'")
  }
  t.match((await app.inject({ url: '/account/reset-password?token=abc' })).body, 'name="newPassword"')
  t.match((await app.inject({ url: '/account/reset-password' })).body, 'name="email"')
})
