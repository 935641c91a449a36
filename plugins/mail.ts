/**
 * Outgoing mail: `app.mail` renders a message from its template and writes it to the outbox
 * inside the caller's transaction; the outbox worker (src/mail/outbox-worker.ts) delivers it
 * through MAIL_TRANSPORT. Without MAIL_TRANSPORT, mail is off: `app.mail.enabled` is false,
 * no worker runs, and `enqueue` refuses (the feature that wanted to send decides what that
 * means).
 *
 * Metrics (registered whether or not mail is on, so dashboards see zeros rather than gaps):
 * auth_mail_sent_total, auth_mail_retried_total, auth_mail_dead_lettered_total, and the gauge
 * auth_mail_pending (messages not yet sent nor dead, read from the outbox at each scrape).
 */
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import fp from 'fastify-plugin'
import { Counter, Gauge } from 'prom-client'
import { createOutboxWorker, type OutboxWorker } from '../src/mail/outbox-worker.js'
import { loadTemplates, renderMail, type MailKind, type RenderedMail } from '../src/mail/templates.js'
import { createMailTransport } from '../src/mail/transports.js'

export interface Mail {
  /** True when MAIL_TRANSPORT is set (a worker delivers the outbox). */
  readonly enabled: boolean
  /** Renders `kind` for `recipient` (throws when a template variable has no value). */
  render: (kind: MailKind, recipient: string, vars: Record<string, string | number>) => RenderedMail
  /**
   * Renders and writes the message to the outbox inside the transaction of the change that
   * causes it: synchronous, called inside a repository write's `alongside` (see
   * `OutboxRepository.enqueue`). Throws when mail is off, which rolls that transaction back.
   */
  enqueue: (kind: MailKind, recipient: string, vars: Record<string, string | number>, now: Date) => { idempotencyKey: string }
  /** The worker, when mail is on. */
  readonly worker: OutboxWorker | null
}

declare module 'fastify' {
  interface FastifyInstance {
    mail: Mail
  }
}

export default fp(async function mailPlugin (app) {
  const { config, repos, metrics } = app
  const settings = config.mail
  const templates = loadTemplates(settings.templatesDir)
  const context = { product: settings.productName, linkBase: settings.linkBase }
  const log = app.log.child({ job: 'mail' })
  const transport = createMailTransport(settings, log)
  const worker = transport === null
    ? null
    : createOutboxWorker({
      outbox: repos.outbox,
      transport,
      settings,
      log,
      holder: `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`,
      ...(app.durability === null ? {} : { durable: app.durability.sync })
    })

  const render: Mail['render'] = (kind, recipient, vars) => renderMail(templates, context, kind, recipient, vars)
  app.decorate('mail', {
    enabled: worker !== null,
    worker,
    render,
    enqueue (kind, recipient, vars, now) {
      if (worker === null) throw new Error('mail is off (MAIL_TRANSPORT is not set)')
      return repos.outbox.enqueue({ ...render(kind, recipient, vars), now })
    }
  } satisfies Mail)

  const counted = (name: string, help: string, read: () => number): void => {
    new Counter({ // eslint-disable-line no-new
      name,
      help,
      registers: [metrics.registry],
      collect () {
        this.reset()
        this.inc(read())
      }
    })
  }
  counted('auth_mail_sent_total', 'Messages the transport accepted', () => worker?.counts.sent ?? 0)
  counted('auth_mail_retried_total', 'Failed delivery attempts that will be retried', () => worker?.counts.retried ?? 0)
  counted('auth_mail_dead_lettered_total', 'Messages given up after MAIL_MAX_ATTEMPTS (listed by `admin mail dead`)', () => worker?.counts.dead ?? 0)
  new Gauge({ // eslint-disable-line no-new
    name: 'auth_mail_pending',
    help: 'Messages in the outbox neither sent nor dead-lettered (all instances)',
    registers: [metrics.registry],
    async collect () {
      this.set(await repos.outbox.countPending())
    }
  })

  if (worker === null) return
  if (transport?.name === 'log') log.warn('MAIL_TRANSPORT=log: messages, one-time links included, are written to the log (development only)')
  app.addHook('onReady', async () => { worker.start() })
  app.addHook('onClose', async () => { await worker.close() })
}, { name: 'mail', fastify: '5.x', dependencies: ['config', 'db', 'metrics'] })
