/**
 * Where the outbox worker hands messages over (MAIL_TRANSPORT): an SMTP server through
 * nodemailer, an HTTP webhook signed with HMAC (webhook-signature.ts), or the log (development
 * only; config.ts refuses it in production).
 *
 * A transport's `send` resolves once the other side has accepted the message (SMTP: the
 * server's 250 after DATA; webhook: a 2xx answer) and rejects otherwise. MAIL_SEND_TIMEOUT
 * bounds each step of an SMTP hand-over and the whole webhook request. The idempotency key travels with every attempt (`Message-ID`
 * `<key@domain>` and `X-Idempotency-Key` in mail; the header and the body's `idempotencyKey`
 * in the webhook), so a receiver that got a message whose acknowledgement was lost can drop
 * the repeat.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { OutboxMessage } from '../../db/repositories/outbox.js'
import type { Config } from '../config.js'
import { IDEMPOTENCY_HEADER, SIGNATURE_HEADER, signWebhook, TIMESTAMP_HEADER } from './webhook-signature.js'

/** A message as the outbox hands it over (its row id and attempt count are the worker's business). */
export type OutgoingMail = Omit<OutboxMessage, 'id' | 'attempts'>

export interface MailTransport {
  readonly name: 'smtp' | 'webhook' | 'log'
  send: (mail: OutgoingMail) => Promise<void>
  close: () => void
}

/** The domain part of MAIL_FROM (for Message-ID), or the link base's host. */
function messageIdDomain (config: Config['mail']): string {
  const address = /<([^>]+)>/.exec(config.from ?? '')?.[1] ?? config.from ?? ''
  const domain = address.includes('@') ? address.slice(address.lastIndexOf('@') + 1) : new URL(config.linkBase).hostname
  return domain.replace(/[^A-Za-z0-9.-]/g, '') || 'localhost'
}

export function createSmtpTransport (config: Config['mail']): MailTransport {
  const timeout = config.sendTimeoutMs
  // One connection per message, no pool: a dead pooled connection would fail the next message
  // for nothing, and the outbox already paces delivery.
  // nodemailer is loaded only when SMTP is the transport: loading it loads Node's bundled fetch
  // (undici), which a service without SMTP does not need (test/src/tuning/node-http.test.ts).
  const transporter = import('nodemailer').then(({ createTransport }) => createTransport({
    url: config.smtpUrl!,
    // Each step bounded (connecting, the greeting, every reply), so that a server that stops
    // answering costs one attempt and its connection is closed, never a connection held open.
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
    dnsTimeout: timeout
  }, { from: config.from }))
  const domain = messageIdDomain(config)
  return {
    name: 'smtp',
    async send (mail) {
      await (await transporter).sendMail({
        to: mail.recipient,
        subject: mail.subject,
        text: mail.text,
        html: mail.html,
        messageId: `<${mail.idempotencyKey}@${domain}>`,
        headers: { 'X-Idempotency-Key': mail.idempotencyKey }
      })
    },
    close () { void transporter.then((t) => { t.close() }) }
  }
}

/** The webhook's JSON body. */
export interface WebhookBody {
  idempotencyKey: string
  kind: string
  to: string
  subject: string
  text: string
  html: string
  createdAt: string
}

export function createWebhookTransport (config: Config['mail']): MailTransport {
  const url = config.webhookUrl!
  const secret = config.webhookSecret!
  return {
    name: 'webhook',
    async send (mail) {
      const body: WebhookBody = {
        idempotencyKey: mail.idempotencyKey,
        kind: mail.kind,
        to: mail.recipient,
        subject: mail.subject,
        text: mail.text,
        html: mail.html,
        createdAt: mail.createdAt.toISOString()
      }
      const raw = JSON.stringify(body)
      const timestamp = Math.floor(Date.now() / 1000)
      const res = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          [IDEMPOTENCY_HEADER]: mail.idempotencyKey,
          [TIMESTAMP_HEADER]: String(timestamp),
          [SIGNATURE_HEADER]: signWebhook(secret, timestamp, raw)
        },
        body: raw,
        redirect: 'error',
        signal: AbortSignal.timeout(config.sendTimeoutMs)
      })
      // The body is not needed; reading it frees the connection.
      await res.arrayBuffer().catch(() => undefined)
      if (res.status < 200 || res.status > 299) throw new Error(`webhook answered ${res.status}`)
    },
    close () {}
  }
}

/** Writes each message, links included, to the log. For development: refused in production. */
export function createLogTransport (log: FastifyBaseLogger): MailTransport {
  return {
    name: 'log',
    async send (mail) {
      const links = [...new Set(mail.text.match(/https?:\/\/[^\s<>"]+/g) ?? [])]
      log.info({ mail: { to: mail.recipient, kind: mail.kind, subject: mail.subject, idempotencyKey: mail.idempotencyKey, links, text: mail.text } },
        `mail to ${mail.recipient}: ${mail.subject}`)
    },
    close () {}
  }
}

export function createMailTransport (config: Config['mail'], log: FastifyBaseLogger): MailTransport | null {
  switch (config.transport) {
    case 'smtp': return createSmtpTransport(config)
    case 'webhook': return createWebhookTransport(config)
    case 'log': return createLogTransport(log)
    default: return null
  }
}
