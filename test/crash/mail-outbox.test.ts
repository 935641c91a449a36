/**
 * The outbox survives SIGKILL. The real server (src/server.ts) runs as a child process on a
 * database file, delivering to a real SMTP server on loopback (test/support/smtp.ts):
 *
 * 1. A message is committed to the outbox (through the repository, in a transaction on the
 *    file, as a route will), the service claims it and hands it to SMTP, and SMTP takes the
 *    data but never answers: the hand-over has not succeeded. The service is SIGKILLed there.
 * 2. Another message is committed while the service is down.
 * 3. The service starts again: the claim of the first message runs out and it is taken again;
 *    the second is due. Each is delivered, once, with the idempotency key it was written with.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { openDatabase } from '../../db/client.js'
import { createOutboxRepository } from '../../db/repositories/outbox.js'
import { loadTemplates, renderMail } from '../../src/mail/templates.js'
import { until } from '../support/app.js'
import { serverEnv, startServer } from '../support/process.js'
import { startSmtpSink } from '../support/smtp.js'

/** Commits one password-reset message to the outbox of the database file, as a route would. */
async function enqueueOnFile (path: string, to: string): Promise<string> {
  const opened = openDatabase({ path })
  try {
    const outbox = createOutboxRepository(opened.db)
    const message = renderMail(loadTemplates(), { product: 'Example', linkBase: 'https://app.example.test' }, 'password_reset', to,
      { link: `https://app.example.test/reset?token=${to}`, expiresInMinutes: 30 })
    let key = ''
    await outbox.enqueueAlone(() => { key = outbox.enqueue({ ...message, now: new Date() }).idempotencyKey })
    return key
  } finally {
    opened.sqlite.close()
  }
}

function states (path: string): Array<{ recipient: string, state: string, attempts: number }> {
  const db = new Database(path, { readonly: true })
  try {
    return db.prepare('SELECT recipient, state, attempts FROM mail_outbox ORDER BY id').all() as Array<{ recipient: string, state: string, attempts: number }>
  } finally {
    db.close()
  }
}

t.test('a message committed before a SIGKILL is delivered after the restart, once', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mail-crash-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'auth.db')
  const smtp = await startSmtpSink(t)
  smtp.hold = true
  const env = serverEnv(path, {
    MAIL_TRANSPORT: 'smtp',
    SMTP_URL: smtp.url,
    MAIL_FROM: 'no-reply@example.test',
    // A claim lasts three times this: long enough for the kill below, short enough to wait out.
    MAIL_SEND_TIMEOUT: '2s',
    MAIL_POLL_INTERVAL: '100ms',
    HOUSEKEEPING_INTERVAL: '0'
  })
  const first = await startServer(env)
  t.teardown(() => first.kill())

  const heldKey = await enqueueOnFile(path, 'held@example.test')
  await until(() => smtp.held === 1)
  t.match(states(path), [{ recipient: 'held@example.test', state: 'sending', attempts: 1 }], 'claimed and mid hand-over')
  await first.kill('SIGKILL')
  t.equal(smtp.messages.length, 0, 'SMTP never accepted it')

  const laterKey = await enqueueOnFile(path, 'later@example.test')
  smtp.hold = false
  const second = await startServer(env)
  t.teardown(() => second.kill())
  await until(() => states(path).every((row) => row.state === 'sent'))
  t.same(smtp.messages.map((m) => m.header('x-idempotency-key')).sort(), [heldKey, laterKey].sort(), 'each delivered once, with its own key')
  t.same(smtp.messages.map((m) => m.to[0]).sort(), ['held@example.test', 'later@example.test'])
  t.match(states(path), [{ recipient: 'held@example.test', attempts: 2 }, { recipient: 'later@example.test', attempts: 1 }])
  await second.kill('SIGTERM')
})
