/**
 * The mail outbox (table `mail_outbox`, db/schema.ts): messages written in the transaction of
 * the change that causes them, then claimed, delivered and marked by the worker
 * (src/mail/outbox-worker.ts).
 *
 * Everything the worker and the admin CLI need goes through `OutboxRepository`, so that another
 * database can implement the same contract: `enqueue` joins the caller's transaction (as
 * `audit.recordNow` does: synchronous, called inside a write's `alongside`); `claim`
 * is one conditional UPDATE, so two instances never hold one message at the same time; `markSent`
 * and `markFailed` commit only while the claim is still the caller's.
 */
import { randomBytes } from 'node:crypto'
import { and, asc, eq, sql } from 'drizzle-orm'
import type { Db } from '../client.js'
import { mailOutbox } from '../schema.js'

export type OutboxState = 'pending' | 'sending' | 'sent' | 'dead'

export interface NewOutboxMessage {
  kind: string
  recipient: string
  subject: string
  text: string
  html: string
  now: Date
}

export interface OutboxMessage {
  id: number
  idempotencyKey: string
  kind: string
  recipient: string
  subject: string
  text: string
  html: string
  /** Delivery attempts begun, this one included once claimed. */
  attempts: number
  createdAt: Date
}

export interface DeadMessage {
  id: number
  kind: string
  recipient: string
  attempts: number
  lastError: string | null
  createdAt: Date
}

export interface OutboxRepository {
  /**
   * Writes a pending message, due now, inside the caller's transaction: it commits or rolls
   * back with the change that caused it. Synchronous, like `audit.recordNow`: it is called
   * inside a repository write's `alongside` (SQLite: any transaction on the connection, which
   * it joins; PostgreSQL: the repository running the transaction collects the message and
   * inserts it before its commit). Throws when called outside one. Returns the message's
   * idempotency key.
   */
  enqueue: (message: NewOutboxMessage) => { idempotencyKey: string }
  /**
   * Runs `alongside` (synchronous; it calls `enqueue`) in a transaction of its own, for a
   * message whose cause writes nothing else; a throw rolls back everything it enqueued.
   */
  enqueueAlone: (alongside: () => void) => Promise<void>
  /** Calls `listener` after each enqueue, once the enqueuing transaction has ended (either way). */
  onEnqueue: (listener: () => void) => () => void
  /**
   * Claims up to `limit` due messages for `holder` until `until`: pending ones whose time has
   * come, and claims of others that ran out (their holder died or hung). Counts the attempt.
   */
  claim: (holder: string, now: Date, until: Date, limit: number) => Promise<OutboxMessage[]>
  /** Marks a claimed message sent and empties its bodies; false when the claim was lost. */
  markSent: (id: number, holder: string, now: Date) => Promise<boolean>
  /** Back to pending at `retryAt`, or dead when `retryAt` is null; false when the claim was lost. */
  markFailed: (id: number, holder: string, error: string, retryAt: Date | null) => Promise<boolean>
  /** The earliest time a message becomes due (a pending one, or a claim running out); null if none. */
  nextDue: () => Promise<Date | null>
  countPending: () => Promise<number>
  listDead: (limit: number) => Promise<DeadMessage[]>
  /** Puts a dead message back to pending, due at `now`, with its attempts counted from zero. */
  retry: (id: number, now: Date) => Promise<boolean>
  /** Deletes messages sent at or before `before`, `batchSize` rows per statement, yielding in between. */
  pruneSentBefore: (before: Date, batchSize: number) => Promise<number>
}

const ERROR_MAX = 500

export function createOutboxRepository (db: Db): OutboxRepository {
  const listeners = new Set<() => void>()
  let notifyScheduled = false

  const claimStatement = db.$client.prepare(`
      UPDATE mail_outbox SET state = 'sending', claim_holder = ?, claim_until = ?, attempts = attempts + 1
      WHERE id IN (
        SELECT id FROM mail_outbox
        WHERE (state = 'pending' AND next_attempt_at <= ?) OR (state = 'sending' AND claim_until <= ?)
        ORDER BY next_attempt_at, id LIMIT ?)
      RETURNING id, idempotency_key, kind, recipient, subject, text_body, html_body, attempts, created_at`)
  const nextDueStatement = db.$client.prepare(`
    SELECT min(due) AS due FROM (
      SELECT min(next_attempt_at) AS due FROM mail_outbox WHERE state = 'pending'
      UNION ALL
      SELECT min(claim_until) AS due FROM mail_outbox WHERE state = 'sending')`)

  const claimTx = db.$client.transaction((holder: string, now: number, until: number, limit: number): OutboxMessage[] => {
    const rows = claimStatement.all(holder, until, now, now, limit) as Array<{ id: number, idempotency_key: string, kind: string, recipient: string, subject: string, text_body: string, html_body: string, attempts: number, created_at: number }>
    return rows.sort((a, b) => a.id - b.id).map((r) => ({
      id: r.id,
      idempotencyKey: r.idempotency_key,
      kind: r.kind,
      recipient: r.recipient,
      subject: r.subject,
      text: r.text_body,
      html: r.html_body,
      attempts: r.attempts,
      createdAt: new Date(r.created_at)
    }))
  })

  const claimed = (id: number, holder: string) =>
    and(eq(mailOutbox.id, id), eq(mailOutbox.state, 'sending'), eq(mailOutbox.claimHolder, holder))

  return {
    enqueue (m) {
      // Outside a transaction the row would be committed on its own, whatever happens to the
      // change that caused it: exactly what the outbox exists to prevent.
      if (!db.$client.inTransaction) throw new Error('outbox: enqueue must run inside the transaction of the change that causes the message')
      const idempotencyKey = randomBytes(18).toString('base64url')
      db.insert(mailOutbox).values({
        idempotencyKey,
        kind: m.kind,
        recipient: m.recipient,
        subject: m.subject,
        textBody: m.text,
        htmlBody: m.html,
        state: 'pending',
        attempts: 0,
        createdAt: m.now,
        nextAttemptAt: m.now
      }).run()
      // better-sqlite3 transactions are synchronous: by the time the event loop turns, the
      // caller's transaction has committed or rolled back, and a woken worker sees which.
      if (!notifyScheduled && listeners.size > 0) {
        notifyScheduled = true
        setImmediate(() => {
          notifyScheduled = false
          for (const listener of listeners) listener()
        })
      }
      return { idempotencyKey }
    },

    async enqueueAlone (alongside) {
      db.$client.transaction(alongside).immediate()
    },

    onEnqueue (listener) {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    },

    async claim (holder, now, until, limit) {
      return claimTx.immediate(holder, now.getTime(), until.getTime(), limit)
    },

    async markSent (id, holder, now) {
      return db.transaction((tx) => tx.update(mailOutbox)
        .set({ state: 'sent', sentAt: now, claimHolder: null, claimUntil: null, textBody: '', htmlBody: '', lastError: null })
        .where(claimed(id, holder)).run().changes > 0)
    },

    async markFailed (id, holder, error, retryAt) {
      const lastError = error.slice(0, ERROR_MAX)
      return db.transaction((tx) => tx.update(mailOutbox)
        .set(retryAt === null
          ? { state: 'dead', claimHolder: null, claimUntil: null, lastError }
          : { state: 'pending', nextAttemptAt: retryAt, claimHolder: null, claimUntil: null, lastError })
        .where(claimed(id, holder)).run().changes > 0)
    },

    async nextDue () {
      const row = nextDueStatement.get() as { due: number | null }
      return row.due === null ? null : new Date(row.due)
    },

    async countPending () {
      return db.select({ n: sql<number>`count(*)` }).from(mailOutbox)
        .where(sql`${mailOutbox.state} IN ('pending', 'sending')`).get()?.n ?? 0
    },

    async listDead (limit) {
      return db.select({
        id: mailOutbox.id,
        kind: mailOutbox.kind,
        recipient: mailOutbox.recipient,
        attempts: mailOutbox.attempts,
        lastError: mailOutbox.lastError,
        createdAt: mailOutbox.createdAt
      }).from(mailOutbox).where(eq(mailOutbox.state, 'dead')).orderBy(asc(mailOutbox.id)).limit(limit).all()
    },

    async retry (id, now) {
      return db.transaction((tx) => tx.update(mailOutbox)
        .set({ state: 'pending', attempts: 0, nextAttemptAt: now })
        .where(and(eq(mailOutbox.id, id), eq(mailOutbox.state, 'dead'))).run().changes > 0)
    },

    async pruneSentBefore (before, batchSize) {
      let deleted = 0
      for (;;) {
        const n = db.delete(mailOutbox)
          .where(sql`${mailOutbox.id} IN (SELECT id FROM ${mailOutbox} WHERE ${mailOutbox.state} = 'sent' AND ${mailOutbox.sentAt} <= ${before.getTime()} LIMIT ${batchSize})`)
          .run().changes
        deleted += n
        if (n < batchSize) break
        await new Promise((resolve) => setImmediate(resolve))
      }
      return deleted
    }
  }
}
