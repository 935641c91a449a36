/**
 * The outbox end to end, in process: the app's own worker delivers to a real SMTP server on
 * loopback (test/support/smtp.ts). Each test enqueues the way a feature does: through
 * `app.mail.enqueue` inside a real transaction of the app's database (SQLite, or PostgreSQL
 * with TEST_DATABASE=postgres; the tests of SQLite's group commit run on SQLite only).
 */
import { once } from 'node:events'
import fs, { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { Writable } from 'node:stream'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import type { FastifyInstance } from 'fastify'
import { SMTPServer } from 'smtp-server'
import t, { type Test } from 'tap'
import { runAdminCommand } from '../../../src/cli/admin.js'
import { retryDelayMs } from '../../../src/mail/outbox-worker.js'
import { buildTestApp, TEST_DATABASE, until } from '../../support/app.js'
import { rows as tableRows } from '../../support/db.js'
import { freshPostgresDatabase, queryPostgres } from '../../support/pg.js'
import { metric, scrape } from '../../support/metrics.js'
import { closedPort, startSmtpSink } from '../../support/smtp.js'

const MAIL_ENV = { MAIL_TRANSPORT: 'smtp', MAIL_FROM: 'Example <no-reply@example.test>', MAIL_PRODUCT_NAME: 'Example', APP_URL: 'https://app.example.test' }

interface Row { id: number, state: string, attempts: number, last_error: string | null, text_body: string, idempotency_key: string, next_attempt_at: number | string | Date }
const rows = async (app: FastifyInstance): Promise<Row[]> =>
  (await tableRows<Row>(app, 'SELECT * FROM mail_outbox ORDER BY id')).map((r) => ({ ...r, id: Number(r.id) }))

const sqliteOnly = TEST_DATABASE === 'postgres' ? { skip: 'SQLite only: group commit and fsync' } : {}

/** A database for an app that a test closes and opens again: a file, or a fresh PostgreSQL database. */
async function reopenable (t: Test, prefix: string): Promise<{ url: string, read: (sql: string) => Promise<Array<Record<string, unknown>>> }> {
  if (TEST_DATABASE === 'postgres') {
    const { url } = await freshPostgresDatabase(t)
    return { url, read: async (sql) => await queryPostgres(url, sql) }
  }
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'auth.db')
  return {
    url: `file:${path}`,
    read: async (sql) => {
      const db = new Database(path, { readonly: true })
      try { return db.prepare(sql).all() as Array<Record<string, unknown>> } finally { db.close() }
    }
  }
}

/** A password-reset message for `to`, enqueued in its own committed transaction. */
async function enqueueReset (app: FastifyInstance, to: string, token = 'tok3n'): Promise<{ idempotencyKey: string }> {
  let enqueued: { idempotencyKey: string } | undefined
  await app.repos.outbox.enqueueAlone(() => {
    enqueued = app.mail.enqueue('password_reset', to, { link: `https://app.example.test/reset?token=${token}`, expiresInMinutes: 30 }, new Date())
  })
  return enqueued!
}

t.test('a message enqueued in a committed transaction is delivered by SMTP at once, with its idempotency key', async (t) => {
  const smtp = await startSmtpSink(t)
  // An hour between polls: the enqueue itself must wake the worker.
  const app = await buildTestApp(t, { ...MAIL_ENV, SMTP_URL: smtp.url, MAIL_POLL_INTERVAL: '1h' })
  const { idempotencyKey } = await enqueueReset(app, 'alice@example.test', 'abc&def')
  const [mail] = await smtp.waitFor(1)
  t.same(mail!.to, ['alice@example.test'])
  t.equal(mail!.header('subject'), 'Reset your Example password')
  t.equal(mail!.header('x-idempotency-key'), idempotencyKey)
  t.equal(mail!.header('message-id'), `<${idempotencyKey}@example.test>`)
  t.match(mail!.header('from'), /no-reply@example\.test/)
  t.match(mail!.text, 'https://app.example.test/reset?token=abc&def')
  // The HTML part carries the same link, escaped for an attribute.
  t.match(mail!.raw.replace(/=\r?\n/g, '').replace(/=3D/g, '='), 'href="https://app.example.test/reset?token=abc&amp;def"')
  await until(async () => (await rows(app))[0]?.state === 'sent')
  // Once sent, the stored message keeps its metadata only: the link is gone from the database.
  t.equal((await rows(app))[0]!.text_body, '')
  t.equal(metric(await scrape(app), 'auth_mail_sent_total'), 1)
})

t.test('a message enqueued in a transaction that rolls back is never sent', async (t) => {
  const smtp = await startSmtpSink(t)
  const app = await buildTestApp(t, { ...MAIL_ENV, SMTP_URL: smtp.url })
  await t.rejects(app.repos.outbox.enqueueAlone(() => {
    app.mail.enqueue('password_reset', 'rolled-back@example.test', { link: 'https://app.example.test/reset?token=lost', expiresInMinutes: 30 }, new Date())
    throw new Error('the change that caused the message failed')
  }), /the change that caused the message failed/)
  // A second message, committed after: once it has arrived, the worker has had its chance at both.
  await enqueueReset(app, 'committed@example.test')
  await smtp.waitFor(1)
  await app.mail.worker!.drain()
  t.same(smtp.messages.map((m) => m.to[0]), ['committed@example.test'])
  t.equal((await rows(app)).length, 1)
})

t.test('enqueue refuses to run outside a transaction', async (t) => {
  const smtp = await startSmtpSink(t)
  const app = await buildTestApp(t, { ...MAIL_ENV, SMTP_URL: smtp.url })
  t.throws(() => app.mail.enqueue('password_changed', 'alone@example.test', {}, new Date()), /inside the transaction/)
  t.equal((await rows(app)).length, 0)
})

t.test('SMTP down: the message is retried with growing delays and delivered exactly once when SMTP returns', async (t) => {
  const smtp = await startSmtpSink(t)
  await smtp.stop()
  const app = await buildTestApp(t, { ...MAIL_ENV, SMTP_URL: smtp.url, MAIL_RETRY_BASE: '100ms', MAIL_RETRY_MAX: '400ms', MAIL_MAX_ATTEMPTS: '50' })
  const { idempotencyKey } = await enqueueReset(app, 'bob@example.test')
  let row: Row | undefined
  await until(async () => { row = (await rows(app))[0]; return row!.attempts >= 3 && row!.state === 'pending' })
  t.match(row!.last_error, /ECONNREFUSED/, 'the transport error is kept')
  t.ok(metric(await scrape(app), 'auth_mail_retried_total') >= 3)
  t.equal(smtp.messages.length, 0)

  await smtp.start()
  await smtp.waitFor(1)
  await until(async () => (await rows(app))[0]!.state === 'sent')
  await app.mail.worker!.drain()
  t.equal(smtp.messages.length, 1, 'delivered once')
  t.equal(smtp.messages[0]!.header('x-idempotency-key'), idempotencyKey)
  t.equal(metric(await scrape(app), 'auth_mail_sent_total'), 1)
  t.equal(metric(await scrape(app), 'auth_mail_pending'), 0)
})

t.test('the retry delay doubles per attempt up to the cap, with its upper half random', async (t) => {
  const low = (n: number): number => retryDelayMs(n, 30_000, 3_600_000, () => 0)
  const high = (n: number): number => retryDelayMs(n, 30_000, 3_600_000, () => 1 - Number.EPSILON)
  t.same([1, 2, 3, 4].map(low), [15_000, 30_000, 60_000, 120_000])
  t.same([1, 2, 3, 4].map(high), [30_000, 60_000, 120_000, 240_000])
  t.equal(high(30), 3_600_000, 'capped')
  t.equal(low(30), 1_800_000)
})

t.test('after the last attempt a message is dead-lettered: counted in /metrics, listed by `admin mail dead`, revived by `admin mail retry`', async (t) => {
  const database = await reopenable(t, 'mail-dead-')
  const env = { DATABASE_URL: database.url, ...MAIL_ENV, SMTP_URL: `smtp://127.0.0.1:${await closedPort()}`, MAIL_MAX_ATTEMPTS: '2', MAIL_RETRY_BASE: '20ms', MAIL_RETRY_MAX: '20ms', MAIL_POLL_INTERVAL: '100ms' }
  const app = await buildTestApp(t, env)
  await enqueueReset(app, 'carol@example.test')
  const { id } = (await rows(app))[0]!
  await until(async () => (await rows(app))[0]!.state === 'dead')
  const text = await scrape(app)
  t.equal(metric(text, 'auth_mail_dead_lettered_total'), 1)
  t.equal(metric(text, 'auth_mail_retried_total'), 1)
  t.equal(metric(text, 'auth_mail_pending'), 0)

  const out: string[] = []
  const cliEnv = { NODE_ENV: 'test', DATABASE_URL: env.DATABASE_URL, ...MAIL_ENV, SMTP_URL: env.SMTP_URL }
  t.equal(await runAdminCommand(['mail', 'dead', '--json'], { env: cliEnv, stdout: (s) => out.push(s) }), 0)
  const dead = JSON.parse(out.join('\n')) as Array<Record<string, unknown>>
  t.equal(dead.length, 1)
  t.match(dead[0], { id, kind: 'password_reset', recipient: 'carol@example.test', attempts: 2, lastError: /ECONNREFUSED/ })
  t.match(dead[0]!.createdAt, /^\d{4}-\d\d-\d\dT/)
  const table: string[] = []
  t.equal(await runAdminCommand(['mail', 'dead'], { env: cliEnv, stdout: (s) => table.push(s) }), 0)
  t.match(table.join('\n'), /carol@example\.test/)

  // Revived while SMTP is back: the worker finds it at its next poll and delivers it.
  const smtp = await startSmtpSink(t)
  await app.close()
  const app2 = await buildTestApp(t, { ...env, SMTP_URL: smtp.url })
  t.equal(await runAdminCommand(['mail', 'retry', String(id)], { env: cliEnv, stdout: () => {} }), 0)
  const [mail] = await smtp.waitFor(1)
  t.same(mail!.to, ['carol@example.test'])
  await until(async () => (await rows(app2))[0]!.state === 'sent')
  // Only a dead message can be revived.
  const errors: string[] = []
  t.equal(await runAdminCommand(['mail', 'retry', String(id)], { env: cliEnv, stdout: () => {}, stderr: (s) => errors.push(s) }), 1)
  t.match(errors.join('\n'), /no dead message/)
})

t.test('without any mail setting the service starts as before, with mail off', async (t) => {
  const app = await buildTestApp(t)
  t.equal(app.mail.enabled, false)
  t.equal(app.mail.worker, null)
  await t.rejects(app.repos.outbox.enqueueAlone(() => { app.mail.enqueue('password_changed', 'x@example.test', {}, new Date()) }), /MAIL_TRANSPORT/)
  t.equal(metric(await scrape(app), 'auth_mail_pending'), 0)
})

t.test('MAIL_TRANSPORT=log writes each message, its links included, to the log (development)', async (t) => {
  const chunks: string[] = []
  const logStream = new Writable({ write (chunk: Buffer, _enc, cb) { chunks.push(chunk.toString('utf8')); cb() } })
  const app = await buildTestApp(t, { MAIL_TRANSPORT: 'log', LOG_LEVEL: 'info', APP_URL: 'https://app.example.test' }, { logStream })
  const { idempotencyKey } = await enqueueReset(app, 'frank@example.test', 'l0g')
  await until(async () => (await rows(app))[0]?.state === 'sent')
  const line = chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { mail?: { to: string, links: string[], idempotencyKey: string } }).find((l) => l.mail !== undefined)
  t.match(line?.mail, { to: 'frank@example.test', idempotencyKey, links: ['https://app.example.test/reset?token=l0g'] })
})

t.test('an SMTP server that accepts the connection and never greets costs one attempt, retried later, its connection closed', async (t) => {
  // A server that never says a word: no greeting, ever. It is closed at the end of the test.
  const sockets: Socket[] = []
  const closed: Socket[] = []
  const silent = createServer((socket) => { sockets.push(socket); socket.on('close', () => closed.push(socket)) })
  silent.listen(0, '127.0.0.1')
  await once(silent, 'listening')
  t.teardown(() => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); silent.close(() => { resolve() }) }))
  const app = await buildTestApp(t, { ...MAIL_ENV, SMTP_URL: `smtp://127.0.0.1:${(silent.address() as AddressInfo).port}`, MAIL_SEND_TIMEOUT: '100ms', MAIL_RETRY_BASE: '1h' })
  const enqueuedAt = Date.now()
  await enqueueReset(app, 'grace@example.test')
  let row: Row | undefined
  await until(async () => { row = (await rows(app))[0]; return row?.state === 'pending' && row.attempts === 1 })
  // Which bound ends the attempt first (the SMTP client's greeting or connection timeout, or
  // the worker abandoning the hand-over at twice MAIL_SEND_TIMEOUT) depends on the machine's
  // load; either way the failure is recorded and the retry is scheduled (MAIL_RETRY_BASE: at
  // least half an hour on).
  t.match(row!.last_error, /Greeting never received|hand-over not finished|ETIMEDOUT/)
  t.ok(new Date(row!.next_attempt_at).getTime() >= enqueuedAt + 30 * 60_000, 'the retry is scheduled, not run at once')
  // The client's greeting timeout closes the connection whichever bound ended the attempt: no
  // connection is left open.
  await until(() => closed.length === 1)
  t.equal(sockets.length, 1)
})

t.test('closing the app waits for the hand-over in flight and records its outcome before the database closes', async (t) => {
  const smtp = await startSmtpSink(t)
  smtp.hold = true
  const database = await reopenable(t, 'mail-close-')
  const app = await buildTestApp(t, { ...MAIL_ENV, DATABASE_URL: database.url, SMTP_URL: smtp.url, MAIL_SEND_TIMEOUT: '1s', MAIL_RETRY_BASE: '1h' })
  await enqueueReset(app, 'heidi@example.test')
  await until(() => smtp.held === 1)
  await app.close()
  t.match((await database.read('SELECT state, attempts, last_error FROM mail_outbox'))[0], { state: 'pending', attempts: 1, last_error: /timeout|not finished/i })
  t.equal(smtp.messages.length, 0)
})

t.test('an SMTP login refused: the error is kept without the password from SMTP_URL', async (t) => {
  const password = 'pa55-w0rd-from-the-url'
  const server = new SMTPServer({
    authMethods: ['PLAIN', 'LOGIN'],
    allowInsecureAuth: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onAuth (_auth, _session, callback) { callback(new Error('Invalid username or password')) }
  })
  const listening = server.listen(0, '127.0.0.1')
  await once(listening, 'listening')
  t.teardown(() => new Promise<void>((resolve) => { server.close(() => { resolve() }) }))
  const chunks: string[] = []
  const logStream = new Writable({ write (chunk: Buffer, _enc, cb) { chunks.push(chunk.toString('utf8')); cb() } })
  const app = await buildTestApp(t, { ...MAIL_ENV, LOG_LEVEL: 'info', SMTP_URL: `smtp://mailer:${password}@127.0.0.1:${(listening.address() as AddressInfo).port}`, MAIL_RETRY_BASE: '1h' }, { logStream })
  await enqueueReset(app, 'ivan@example.test')
  let row: Row | undefined
  await until(async () => { row = (await rows(app))[0]; return row!.attempts === 1 && row!.state === 'pending' })
  t.match(row!.last_error, /Invalid login/)
  t.notMatch(row!.last_error, password)
  t.notMatch(chunks.join(''), password, 'nor in the log')
  t.match(chunks.join(''), /mail not delivered; will retry/)
})

t.test('no message is handed over before its commit is on disk: with fdatasync failing, nothing leaves', sqliteOnly, async (t) => {
  const smtp = await startSmtpSink(t)
  const dir = mkdtempSync(join(tmpdir(), 'mail-durable-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const app = await buildTestApp(t, { ...MAIL_ENV, DATABASE_URL: `file:${join(dir, 'auth.db')}`, SMTP_URL: smtp.url })
  t.ok(app.durability, 'DATABASE_SYNCHRONOUS=FULL on a file: commits are made durable by group commit')
  const real = fs.fdatasync
  t.teardown(() => { fs.fdatasync = real })
  fs.fdatasync = ((_fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    process.nextTick(cb, Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }))
  }) as typeof fs.fdatasync
  await enqueueReset(app, 'judy@example.test')
  await until(() => app.durability!.failure !== null || smtp.messages.length > 0)
  await app.mail.worker!.drain()
  t.equal(smtp.messages.length, 0)
  t.equal((await rows(app))[0]!.state, 'sending', 'claimed, not handed over; the claim runs out and a restarted service takes it')
})
