/**
 * A reset link asked for just before the service is SIGKILLed still arrives, once. The real
 * server (src/server.ts) runs as a child process on a database file (or, with
 * TEST_DATABASE=postgres, a fresh PostgreSQL database) and delivers to a real SMTP server on
 * loopback that takes the message's data and never answers: the hand-over has not succeeded
 * when the service dies. After the restart the outbox hands it over again, and its link works.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { PASSWORD, TEST_DATABASE, until } from '../support/app.js'
import { freshPostgresDatabase, queryPostgres } from '../support/pg.js'
import { serverEnv, startServer } from '../support/process.js'
import { startSmtpSink } from '../support/smtp.js'

const LINK = /http:\/\/localhost:3000\/account\/reset-password\?token=([A-Za-z0-9_-]{43})/

async function post (base: string, path: string, body: unknown): Promise<Response> {
  return await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
}

/** The outbox's states, read from outside the service. */
async function states (databaseUrl: string): Promise<string[]> {
  if (TEST_DATABASE === 'postgres') return (await queryPostgres<{ state: string }>(databaseUrl, 'SELECT state FROM mail_outbox ORDER BY id')).map((r) => r.state)
  const db = new Database(databaseUrl.slice('file:'.length), { readonly: true })
  try {
    return (db.prepare('SELECT state FROM mail_outbox ORDER BY id').all() as Array<{ state: string }>).map((r) => r.state)
  } finally {
    db.close()
  }
}

t.test('a reset link committed before a SIGKILL is delivered after the restart, once, and works', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'reset-crash-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const databaseUrl = TEST_DATABASE === 'postgres' ? (await freshPostgresDatabase(t)).url : `file:${join(dir, 'auth.db')}`
  const smtp = await startSmtpSink(t)
  const env = serverEnv(join(dir, 'auth.db'), {
    DATABASE_URL: databaseUrl,
    MAIL_TRANSPORT: 'smtp',
    SMTP_URL: smtp.url,
    MAIL_FROM: 'no-reply@example.test',
    // A claim lasts three times this: long enough for the kill below, short enough to wait out.
    MAIL_SEND_TIMEOUT: '2s',
    MAIL_POLL_INTERVAL: '100ms',
    // A hand-over that fails on a loaded machine (a slow greeting) is retried within a second,
    // not after the default 30 s back-off, which the test would time out waiting for.
    MAIL_RETRY_BASE: '200ms',
    MAIL_RETRY_MAX: '1s',
    PASSWORD_FORGOT_MIN_DURATION: '10ms',
    HOUSEKEEPING_INTERVAL: '0'
  })
  const first = await startServer(env)
  t.teardown(() => first.kill())
  t.equal((await post(first.base, '/api/auth/register', { username: 'alice', password: PASSWORD, email: 'alice@example.test' })).status, 201)
  // Registration mails a verification link; once it is delivered, SMTP holds the next message.
  await smtp.waitFor(1)
  await until(async () => (await states(databaseUrl)).join() === 'sent')
  smtp.hold = true

  t.equal((await post(first.base, '/api/auth/password/forgot', { email: 'alice@example.test' })).status, 202)
  await until(() => smtp.held === 1)
  await first.kill('SIGKILL')
  t.equal(smtp.messages.length, 1, 'SMTP never acknowledged it (only the verification mail before it)')

  smtp.hold = false
  const second = await startServer(env)
  t.teardown(() => second.kill())
  const mail = (await smtp.waitFor(2))[1]
  t.same(mail!.to, ['alice@example.test'])
  const token = LINK.exec(mail!.text)?.[1]
  t.ok(token, 'the message carries the link')
  const done = await post(second.base, '/api/auth/password/reset', { token, newPassword: 'a brand new passphrase for alice' })
  t.equal(done.status, 204, await done.text())
  // The password_changed notice comes last; the reset link was not sent again.
  await until(async () => (await states(databaseUrl)).join() === 'sent,sent,sent')
  t.same(smtp.messages.map((m) => m.header('subject')), ['Confirm your e-mail address for Auth Service', 'Reset your Auth Service password', 'Your Auth Service password was changed'], 'each message once')
  await second.kill('SIGTERM')
})
