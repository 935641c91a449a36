/**
 * Delivers the outbox (db/repositories/outbox.ts) through a transport (transports.ts).
 *
 * A pass claims a batch of due messages (one conditional UPDATE: pending and due, or claimed
 * by someone whose claim ran out), hands each to the transport, and records the outcome in its
 * own transaction, so a failed commit is seen (and logged) rather than taken for success:
 * - accepted: marked sent. If that commit fails, the claim runs out and the message is sent
 *   again with the same idempotency key; the receiver can tell.
 * - refused or timed out: back to pending after an exponential delay with jitter, or
 *   dead-lettered once MAIL_MAX_ATTEMPTS attempts have failed (`admin mail retry` revives it).
 *
 * The transport bounds each step of a hand-over by MAIL_SEND_TIMEOUT; the worker abandons a
 * whole hand-over after twice that, and a claim lasts three times that, so nobody else takes a
 * message while its holder may still be handing it over. A process that
 * dies mid-delivery (SIGKILL, power cut) leaves a claim that runs out; the next pass anywhere
 * takes the message again. Hence delivery is at least once, and at most once per successful
 * hand-over.
 *
 * The worker runs a pass when woken (every enqueue in this process wakes it once the
 * enqueuing transaction has ended), when the earliest pending message or claim falls due, and
 * at least every MAIL_POLL_INTERVAL (messages enqueued by another process, `admin mail retry`).
 */
import type { FastifyBaseLogger } from 'fastify'
import type { OutboxMessage, OutboxRepository } from '../../db/repositories/outbox.js'
import type { Config } from '../config.js'
import type { MailTransport } from './transports.js'

export interface OutboxWorkerDeps {
  outbox: Pick<OutboxRepository, 'claim' | 'markSent' | 'markFailed' | 'nextDue' | 'onEnqueue'>
  transport: MailTransport
  settings: Pick<Config['mail'], 'maxAttempts' | 'retryBaseMs' | 'retryMaxMs' | 'pollIntervalMs' | 'sendTimeoutMs' | 'batchSize'>
  log: FastifyBaseLogger
  /** Who claims: unique per process. */
  holder: string
  now?: () => Date
  /** In [0, 1): the jitter's source. */
  random?: () => number
  /**
   * Resolves once every commit so far is on stable storage (the group commit, when the service
   * makes commits durable that way). Awaited before a batch is handed over, so that no message
   * leaves whose cause (the token it links to) a power cut could still take back.
   */
  durable?: () => Promise<void>
}

export interface OutboxWorker {
  /** Starts the schedule (a first pass at once). */
  start: () => void
  /** Runs a pass soon (coalesced with one already running). */
  wake: () => void
  /** Runs passes until nothing is due; resolves with the number of messages handled. */
  drain: () => Promise<number>
  /** Stops scheduling, waits for the pass in flight, closes the transport. */
  close: () => Promise<void>
  readonly counts: { sent: number, retried: number, dead: number }
}

/**
 * The delay before retry number `attempt` (1 = the first retry): base × 2^(attempt-1), capped
 * at `max`, of which the upper half is random ("equal jitter"): instances that failed together
 * do not all come back at the same instant, and no retry comes sooner than half its step.
 */
export function retryDelayMs (attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const step = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 40))
  return Math.round(step / 2 + random() * (step / 2))
}

/** The error's own words and code, never the settings it was made from (SMTP_URL holds a password). */
function describe (err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const cause = (err as { cause?: { code?: unknown, message?: unknown } }).cause
  const code = (err as { code?: unknown }).code ?? cause?.code
  const message = err.message + (typeof cause?.message === 'string' && cause.message !== err.message ? ` (${cause.message})` : '')
  return typeof code === 'string' && !message.includes(code) ? `${code}: ${message}` : message
}

class SendTimeout extends Error {
  constructor (ms: number) { super(`hand-over not finished within ${ms} ms (twice MAIL_SEND_TIMEOUT)`); this.name = 'SendTimeout' }
}

export function createOutboxWorker (deps: OutboxWorkerDeps): OutboxWorker {
  const { outbox, transport, settings, log, holder } = deps
  const now = deps.now ?? (() => new Date())
  const random = deps.random ?? Math.random
  const handOverMs = settings.sendTimeoutMs * 2
  const leaseMs = settings.sendTimeoutMs * 3
  const counts = { sent: 0, retried: 0, dead: 0 }
  let running: Promise<number> | null = null
  let again = false
  let timer: NodeJS.Timeout | null = null
  let started = false
  let closed = false

  async function handOver (message: OutboxMessage): Promise<void> {
    let timeout: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        transport.send({ ...message }),
        new Promise<never>((_resolve, reject) => { timeout = setTimeout(() => { reject(new SendTimeout(handOverMs)) }, handOverMs) })
      ])
    } finally {
      clearTimeout(timeout)
    }
  }

  async function deliver (message: OutboxMessage): Promise<void> {
    const fields = { outboxId: message.id, kind: message.kind, attempt: message.attempts }
    let failure: string | null = null
    try {
      await handOver(message)
    } catch (err) {
      failure = describe(err)
    }
    try {
      if (failure === null) {
        if (await outbox.markSent(message.id, holder, now())) {
          counts.sent++
          log.info(fields, 'mail sent')
        } else {
          log.warn(fields, 'mail sent, but its claim had run out meanwhile: another attempt may repeat it (same idempotency key)')
        }
        return
      }
      const dead = message.attempts >= settings.maxAttempts
      const retryAt = dead ? null : new Date(now().getTime() + retryDelayMs(message.attempts, settings.retryBaseMs, settings.retryMaxMs, random))
      if (!await outbox.markFailed(message.id, holder, failure, retryAt)) return
      if (dead) {
        counts.dead++
        log.error({ ...fields, error: failure }, 'mail dead-lettered after its last attempt (admin mail dead / mail retry)')
      } else {
        counts.retried++
        log.warn({ ...fields, error: failure, retryAt }, 'mail not delivered; will retry')
      }
    } catch (err) {
      // The outcome did not commit: the claim runs out and the message is taken again.
      log.error({ ...fields, err }, 'mail outcome not recorded; the message will be attempted again')
    }
  }

  async function pass (): Promise<number> {
    let handled = 0
    do {
      again = false
      const at = now()
      const batch = await outbox.claim(holder, at, new Date(at.getTime() + leaseMs), settings.batchSize)
      if (batch.length > 0 && deps.durable !== undefined) await deps.durable()
      // In parallel: each hand-over is abandoned after twice MAIL_SEND_TIMEOUT, so the whole
      // batch ends within its claim.
      await Promise.all(batch.map(deliver))
      handled += batch.length
      if (batch.length === settings.batchSize) again = true
    } while (again && !closed)
    return handled
  }

  async function schedule (): Promise<void> {
    if (closed || !started) return
    if (timer !== null) clearTimeout(timer)
    let delay = settings.pollIntervalMs
    try {
      const due = await outbox.nextDue()
      if (due !== null) delay = Math.min(delay, Math.max(10, due.getTime() - now().getTime()))
    } catch (err) {
      log.error({ err }, 'mail outbox not readable; trying again later')
    }
    if (closed) return
    // Another pass may have ended (and scheduled) while this one read the outbox.
    if (timer !== null) clearTimeout(timer)
    timer = setTimeout(() => { timer = null; wake() }, delay)
    timer.unref()
  }

  function run (): Promise<number> {
    running ??= pass()
      .catch((err: unknown) => { log.error({ err }, 'mail delivery pass failed'); return 0 })
      .finally(() => {
        running = null
        if (again && !closed) wake()
        else void schedule()
      })
    return running
  }

  function wake (): void {
    if (closed) return
    if (running !== null) { again = true; return }
    void run()
  }

  const unsubscribe = outbox.onEnqueue(wake)

  return {
    counts,
    start () {
      started = true
      wake()
    },
    wake,
    async drain () {
      let total = 0
      for (;;) {
        if (running !== null) total += await running
        const n = await run()
        total += n
        if (n === 0) return total
      }
    },
    async close () {
      closed = true
      unsubscribe()
      if (timer !== null) clearTimeout(timer)
      await running
      transport.close()
    }
  }
}
