/**
 * The client library's account calls against a really listening service that sends its mail
 * through a real SMTP server on loopback: register with an address, verify it, ask for a new
 * verification link, log in by address, forget the password and reset it, change the address
 * and undo the change, delete the account. Every link is read
 * from the received message and fetched with GET and HEAD first, as a mail scanner would (under
 * PUBLIC_URL, from the listening service): that spends nothing; the client's call then does.
 * Runs on SQLite and, with TEST_DATABASE=postgres, on PostgreSQL.
 */
import t, { type Test } from 'tap'
import { PASSWORD } from '../support/app.js'
import { loadAuthClient } from '../support/client.js'
import { decodeJwt } from '../support/jwt.js'
import { freePort, listen, type Served } from '../support/server.js'
import { startSmtpSink, type ReceivedMail, type SmtpSink } from '../support/smtp.js'

// What the test uses of the client (loaded untyped: test/support/client.ts), typed here.
type AccountName = { username: string } | { email: string }
interface Client {
  register: (username: string, password: string, options?: { email?: string }) => Promise<void>
  login: (account: string | AccountName, password: string) => Promise<unknown>
  logout: () => Promise<void>
  fetch: (path: string, init?: RequestInit) => Promise<Response>
  requestEmailVerification: () => Promise<void>
  verifyEmail: (token: string) => Promise<void>
  changeEmail: (newEmail: string, password: string) => Promise<void>
  confirmEmail: (token: string) => Promise<void>
  forgotPassword: (account: AccountName) => Promise<void>
  resetPassword: (token: string, newPassword: string) => Promise<void>
  deleteAccount: (password: string) => Promise<void>
  onChange: (listener: (change: { authenticated: boolean, reason: string }) => void) => () => void
  readonly authenticated: boolean
  readonly accessToken: string | null
}
const { AuthError, createAuthClient } = await loadAuthClient<Client>()

const NEW_PASSWORD = 'a quite different passphrase'
const INVALID_LINK = new AuthError(400, 'ACCOUNT_TOKEN_INVALID', 'This link is invalid or has expired')

interface Setup { served: Served, smtp: SmtpSink, client: () => Client }

async function setUp (t: Test): Promise<Setup> {
  // Node has a BroadcastChannel that would keep the test process alive; a client without one
  // works as in an environment that has none.
  const channel = globalThis.BroadcastChannel
  ;(globalThis as { BroadcastChannel?: unknown }).BroadcastChannel = undefined
  t.teardown(() => { globalThis.BroadcastChannel = channel })
  const smtp = await startSmtpSink(t)
  // PUBLIC_URL names the listening origin, so that the mailed links lead to this service.
  const port = await freePort()
  const served = await listen(t, {
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    MAIL_TRANSPORT: 'smtp',
    SMTP_URL: smtp.url,
    MAIL_FROM: 'Example <no-reply@example.test>',
    PASSWORD_FORGOT_MIN_DURATION: '0'
  }, { port })
  return { served, smtp, client: () => createAuthClient({ baseUrl: served.base }) }
}

/** The token of the link to `page` in the message, after a scanner's GET and HEAD of the link (which must spend nothing). */
async function followLink (t: Test, s: Setup, mail: ReceivedMail, page: string): Promise<string> {
  const m = new RegExp(`(${s.served.base.replace(/[.]/g, '\\.')}${page}\\?token=([A-Za-z0-9_-]{43}))`).exec(mail.text)
  if (m === null) throw new Error(`no link to ${page} in: ${mail.text}`)
  for (const method of ['GET', 'HEAD']) {
    const res = await fetch(m[1]!, { method })
    t.equal(res.status, 200, `${method} of the mailed link answers the page`)
    await res.arrayBuffer()
  }
  return m[2]!
}

async function meOf (client: Client): Promise<{ username: string, email: string | null, emailVerified: boolean }> {
  const res = await client.fetch('/api/auth/me')
  if (res.status !== 200) throw new Error(`/me answered ${res.status}`)
  return await res.json() as { username: string, email: string | null, emailVerified: boolean }
}

t.test('register with an address, verify it from the mailed link, log in by address', async (t) => {
  const s = await setUp(t)
  const client = s.client()
  await client.register('alice', PASSWORD, { email: 'alice@example.test' })
  t.same(await client.login({ email: 'alice@example.test' }, PASSWORD), { status: 'signed-in' })
  t.match(await meOf(client), { username: 'alice', email: 'alice@example.test' })
  const [mail] = await s.smtp.waitFor(1)
  t.same(mail!.to, ['alice@example.test'], 'mailed to the address')
  const token = await followLink(t, s, mail!, '/account/verify-email')

  t.equal(decodeJwt(client.accessToken!).payload.email_verified, false, 'not verified before the POST: the scanner spent nothing')
  t.match(await meOf(client), { username: 'alice', emailVerified: false })

  await client.verifyEmail(token)
  t.match(await meOf(client), { username: 'alice', emailVerified: true })
  await t.rejects(client.verifyEmail(token), INVALID_LINK, 'a link works once')

  // A verified address: no new link.
  await t.rejects(client.requestEmailVerification(), { status: 409, code: 'EMAIL_ALREADY_VERIFIED' })
  t.equal(s.smtp.messages.length, 1, 'nothing more was mailed')
})

t.test('ask for a new verification link: the older one stops working', async (t) => {
  const s = await setUp(t)
  const client = s.client()
  await client.register('bob', PASSWORD, { email: 'bob@example.test' })
  const [first] = await s.smtp.waitFor(1)
  const older = await followLink(t, s, first!, '/account/verify-email')
  await client.login('bob', PASSWORD)
  await client.requestEmailVerification()
  const [, second] = await s.smtp.waitFor(2)
  t.same(second!.to, ['bob@example.test'])
  const newer = await followLink(t, s, second!, '/account/verify-email')
  await t.rejects(client.verifyEmail(older), INVALID_LINK, 'the older link is void')
  await client.verifyEmail(newer)
  t.match(await meOf(client), { emailVerified: true })

  const anon = s.client()
  await anon.register('carol', PASSWORD)
  await anon.login('carol', PASSWORD)
  await t.rejects(anon.requestEmailVerification(), { status: 409, code: 'NO_EMAIL' }, 'an account without an address')
})

t.test('forgot password by address and by username, reset from the mailed link, log in with the new password only', async (t) => {
  const s = await setUp(t)
  const client = s.client()
  await client.register('dave', PASSWORD, { email: 'dave@example.test' })
  await s.smtp.waitFor(1) // the verification mail
  await client.login('dave', PASSWORD)
  t.equal(client.authenticated, true)

  // The same answer for an account that does not exist: the call resolves and nothing is mailed.
  await client.forgotPassword({ email: 'nobody@example.test' })
  await client.forgotPassword({ username: 'nobody' })
  await client.forgotPassword({ email: 'dave@example.test' })
  const [, mail] = await s.smtp.waitFor(2)
  t.same(mail!.to, ['dave@example.test'])
  const token = await followLink(t, s, mail!, '/account/reset-password')

  // The scanner's GET and HEAD spent nothing: the password is still the old one.
  const probe = s.client()
  t.same(await probe.login('dave', PASSWORD), { status: 'signed-in' })

  await t.rejects(s.client().resetPassword(token, 'short'), { status: 400, code: 'WEAK_PASSWORD' })
  await s.client().resetPassword(token, NEW_PASSWORD)
  await t.rejects(s.client().resetPassword(token, NEW_PASSWORD), INVALID_LINK, 'a reset link works once')

  const ended: string[] = []
  client.onChange((c) => { if (!c.authenticated) ended.push(c.reason) })
  t.equal((await client.fetch('/api/auth/me')).status, 401, 'every session of the account ended')
  t.same(ended, ['session-ended'])

  await t.rejects(s.client().login('dave', PASSWORD), { status: 401, code: 'INVALID_CREDENTIALS' }, 'the old password fails')
  const again = s.client()
  t.same(await again.login({ email: 'dave@example.test' }, NEW_PASSWORD), { status: 'signed-in' })
  t.match(await meOf(again), { username: 'dave' })

  // By username, too.
  await s.client().forgotPassword({ username: 'dave' })
  const all = await s.smtp.waitFor(4)
  const byName = all.find((m) => m !== mail && m.text.includes('/account/reset-password?token='))
  t.same(byName?.to, ['dave@example.test'], 'a second reset link')
  t.equal(s.smtp.messages.length, 4, 'verification, reset, password changed, reset: nothing for the unknown account')
})

/** The first message to `to` whose text links to `page`, once it has arrived. */
async function mailTo (smtp: SmtpSink, to: string, page: string): Promise<ReceivedMail> {
  for (let n = 1; ; n++) {
    const found = (await smtp.waitFor(n)).find((m) => m.to.includes(to) && m.text.includes(`${page}?token=`))
    if (found !== undefined) return found
  }
}

t.test('change the address from the link mailed to the new one, undo it from the notice to the old one, then delete the account', async (t) => {
  const s = await setUp(t)
  const client = s.client()
  await client.register('erin', PASSWORD, { email: 'erin@example.test' })
  await client.login('erin', PASSWORD)

  await t.rejects(client.changeEmail('erin.new@example.test', 'not the password at all'), { status: 403, code: 'INVALID_CURRENT_PASSWORD' })
  await client.changeEmail('erin.new@example.test', PASSWORD)
  const confirmation = await mailTo(s.smtp, 'erin.new@example.test', '/account/confirm-email')
  const token = await followLink(t, s, confirmation, '/account/confirm-email')
  t.match(await meOf(client), { email: 'erin@example.test' }, 'nothing changes before the link is used (the scanner spent nothing)')
  await client.confirmEmail(token)
  t.match(await meOf(client), { email: 'erin.new@example.test', emailVerified: true })
  await t.rejects(client.confirmEmail(token), INVALID_LINK, 'a confirmation link works once')

  // The old address is told, with a link that undoes the change: confirmEmail spends it too.
  const notice = await mailTo(s.smtp, 'erin@example.test', '/account/undo-email-change')
  const undo = await followLink(t, s, notice, '/account/undo-email-change')
  await s.client().confirmEmail(undo)
  t.equal((await client.fetch('/api/auth/me')).status, 401, 'the undo ends every session')
  const back = s.client()
  t.same(await back.login({ email: 'erin@example.test' }, PASSWORD), { status: 'signed-in' }, 'the old address is the account\'s again')

  await t.rejects(back.deleteAccount('not the password at all'), { status: 403, code: 'INVALID_CURRENT_PASSWORD' })
  t.equal(back.authenticated, true)
  await back.deleteAccount(PASSWORD)
  t.equal(back.authenticated, false, 'the client is signed out')
  await t.rejects(s.client().login('erin', PASSWORD), { status: 401, code: 'INVALID_CREDENTIALS' }, 'the account is gone')
})
