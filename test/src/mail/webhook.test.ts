/**
 * The webhook transport: the app's worker posts each message, signed, to a real HTTP receiver
 * on loopback, which checks the signature with `verifyWebhookSignature` as docs/mail.md tells
 * a receiver to. The same receiver refuses a tampered copy of a request it accepted.
 */
import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { signWebhook, verifyWebhookSignature } from '../../../src/mail/webhook-signature.js'
import { buildTestApp, until } from '../../support/app.js'
import { rows } from '../../support/db.js'

const SECRET = 'a webhook secret of at least 32 bytes, for tests'

interface Received { headers: IncomingHttpHeaders, body: string, status: number }

async function startReceiver (t: Test, secret: string, answer = 204): Promise<{ url: string, received: Received[] }> {
  const received: Received[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      const check = verifyWebhookSignature({
        secret,
        body,
        timestamp: req.headers['x-webhook-timestamp'] as string | undefined,
        signature: req.headers['x-webhook-signature'] as string | undefined
      })
      const status = check.ok ? answer : 401
      received.push({ headers: req.headers, body, status })
      res.writeHead(status).end()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => { resolve() }) }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mail`, received }
}

t.test('the webhook receives each message signed; the receiver verifies it and refuses a tampered copy', async (t) => {
  const receiver = await startReceiver(t, SECRET)
  const app = await buildTestApp(t, { MAIL_TRANSPORT: 'webhook', NOTIFY_WEBHOOK_URL: receiver.url, NOTIFY_WEBHOOK_SECRET: SECRET, MAIL_PRODUCT_NAME: 'Example' })
  let idempotencyKey = ''
  await app.repos.outbox.enqueueAlone(() => {
    idempotencyKey = app.mail.enqueue('verify_email', 'dave@example.test', { link: 'https://localhost:3000/verify?token=t0k' }, new Date()).idempotencyKey
  })
  await until(() => receiver.received.length === 1)
  const [request] = receiver.received
  t.equal(request!.status, 204, 'the signature verified')
  t.equal(request!.headers['x-idempotency-key'], idempotencyKey)
  const body = JSON.parse(request!.body)
  t.match(body, { idempotencyKey, kind: 'verify_email', to: 'dave@example.test', subject: 'Confirm your e-mail address for Example' })
  t.match(body.text, 'https://localhost:3000/verify?token=t0k')
  await until(async () => (await rows<{ state: string }>(app, 'SELECT state FROM mail_outbox'))[0]?.state === 'sent')

  // The same request, replayed with another recipient: refused.
  const tampered = request!.body.replace('dave@example.test', 'mallory@example.test')
  const res = await fetch(receiver.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-webhook-timestamp': request!.headers['x-webhook-timestamp'] as string, 'x-webhook-signature': request!.headers['x-webhook-signature'] as string },
    body: tampered
  })
  t.equal(res.status, 401)
})

t.test('a receiver that refuses (wrong secret) gets the message again later, not marked sent', async (t) => {
  const receiver = await startReceiver(t, 'another secret that the service does not have')
  const app = await buildTestApp(t, { MAIL_TRANSPORT: 'webhook', NOTIFY_WEBHOOK_URL: receiver.url, NOTIFY_WEBHOOK_SECRET: SECRET, MAIL_RETRY_BASE: '50ms', MAIL_RETRY_MAX: '50ms' })
  await app.repos.outbox.enqueueAlone(() => { app.mail.enqueue('password_changed', 'erin@example.test', {}, new Date()) })
  await until(() => receiver.received.length >= 2)
  const [row] = await rows<{ state: string, last_error: string }>(app, 'SELECT state, last_error FROM mail_outbox')
  t.not(row!.state, 'sent')
  t.match(row!.last_error, /webhook answered 401/)
})

t.test('verifyWebhookSignature accepts the genuine request and refuses a tampered body, a wrong secret, an old timestamp', async (t) => {
  const nowMs = 1_800_000_000_000
  const timestamp = nowMs / 1000
  const body = JSON.stringify({ idempotencyKey: 'k', to: 'a@example.test' })
  const signature = signWebhook(SECRET, timestamp, body)
  const check = (over: Partial<Parameters<typeof verifyWebhookSignature>[0]>) =>
    verifyWebhookSignature({ secret: SECRET, body, timestamp: String(timestamp), signature, nowMs, ...over })
  t.same(check({}), { ok: true })
  t.same(check({ body: body.replace('a@', 'b@') }), { ok: false, reason: 'mismatch' }, 'tampered body')
  t.same(check({ secret: 'not the secret the sender used, also long enough' }), { ok: false, reason: 'mismatch' }, 'wrong secret')
  t.same(check({ timestamp: String(timestamp + 1) }), { ok: false, reason: 'mismatch' }, 'the timestamp is signed with the body')
  t.same(check({ nowMs: nowMs + 301_000 }), { ok: false, reason: 'stale' }, 'old timestamp (replay)')
  t.same(check({ nowMs: nowMs + 299_000 }), { ok: true }, 'within the tolerance')
  t.same(check({ signature: undefined }), { ok: false, reason: 'missing' })
  t.same(check({ signature: 'v1=zz' }), { ok: false, reason: 'malformed' })
})
