/**
 * The mail outbox on PostgreSQL: the contract of db/repositories/outbox.ts.
 *
 * - `enqueue` is synchronous, like `audit.recordNow`: a PostgreSQL transaction is asynchronous,
 *   so the repository that runs one collects the messages `enqueue` is given while its
 *   `alongside` runs (`transactionAlongside`, ./alongside.ts) and inserts them in that transaction,
 *   before its commit; the worker is woken once the commit has answered.
 * - `claim` is one UPDATE over the due rows its subquery locks with FOR UPDATE SKIP LOCKED: two
 *   instances claiming at once take disjoint rows, and neither waits for the other.
 * - `markSent` and `markFailed` are one conditional UPDATE each (`state = 'sending'` and the
 *   caller's claim), so a claim taken over by another instance records nothing for its former
 *   holder.
 */
import { randomBytes } from 'node:crypto'
import { and, asc, eq, sql } from 'drizzle-orm'
import type { DeadMessage, NewOutboxMessage, OutboxMessage, OutboxRepository } from '../outbox.js'
import type { PgDb } from '../../pg/client.js'
import { mailOutbox } from '../../pg/schema.js'
import { transactionAlongside } from './alongside.js'

const ERROR_MAX = 500

export type OutboxRow = typeof mailOutbox.$inferInsert

interface Collected { row: OutboxRow, wake: () => void }

let collecting: Collected[] | null = null

/** Runs `fn` (synchronous) and answers the messages `enqueue` was given meanwhile. */
export function collectOutbox (fn: () => void): Collected[] {
  const outer = collecting
  const messages: Collected[] = []
  collecting = messages
  try {
    fn()
  } finally {
    collecting = outer
  }
  return messages
}

export function createPgOutboxRepository (db: PgDb): OutboxRepository {
  const listeners = new Set<() => void>()
  const wake = (): void => { for (const listener of listeners) listener() }

  const claimed = (id: number, holder: string) =>
    and(eq(mailOutbox.id, id), eq(mailOutbox.state, 'sending'), eq(mailOutbox.claimHolder, holder))

  return {
    enqueue (m: NewOutboxMessage) {
      // Outside a collecting transaction the message would have nowhere to go but a commit of
      // its own, apart from the change that caused it: what the outbox exists to prevent.
      if (collecting === null) throw new Error('outbox: enqueue must run inside the transaction of the change that causes the message')
      const idempotencyKey = randomBytes(18).toString('base64url')
      collecting.push({
        row: {
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
        },
        wake
      })
      return { idempotencyKey }
    },

    async enqueueAlone (alongside) {
      await transactionAlongside(db, async (_tx, write) => { await write(alongside) })
    },

    onEnqueue (listener) {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    },

    async claim (holder, now, until, limit): Promise<OutboxMessage[]> {
      const result = await db.execute<{ id: string | number, idempotency_key: string, kind: string, recipient: string, subject: string, text_body: string, html_body: string, attempts: number, created_at: Date }>(sql`
        UPDATE mail_outbox SET state = 'sending', claim_holder = ${holder}, claim_until = ${until.toISOString()}, attempts = attempts + 1
        WHERE id IN (
          SELECT id FROM mail_outbox
          WHERE (state = 'pending' AND next_attempt_at <= ${now.toISOString()}) OR (state = 'sending' AND claim_until <= ${now.toISOString()})
          ORDER BY next_attempt_at, id LIMIT ${limit}
          FOR UPDATE SKIP LOCKED)
        RETURNING id, idempotency_key, kind, recipient, subject, text_body, html_body, attempts, created_at`)
      return result.rows.map((r) => ({
        id: Number(r.id),
        idempotencyKey: r.idempotency_key,
        kind: r.kind,
        recipient: r.recipient,
        subject: r.subject,
        text: r.text_body,
        html: r.html_body,
        attempts: r.attempts,
        createdAt: new Date(r.created_at)
      })).sort((a, b) => a.id - b.id)
    },

    async markSent (id, holder, now) {
      return ((await db.update(mailOutbox)
        .set({ state: 'sent', sentAt: now, claimHolder: null, claimUntil: null, textBody: '', htmlBody: '', lastError: null })
        .where(claimed(id, holder))).rowCount ?? 0) > 0
    },

    async markFailed (id, holder, error, retryAt) {
      const lastError = error.slice(0, ERROR_MAX)
      return ((await db.update(mailOutbox)
        .set(retryAt === null
          ? { state: 'dead', claimHolder: null, claimUntil: null, lastError }
          : { state: 'pending', nextAttemptAt: retryAt, claimHolder: null, claimUntil: null, lastError })
        .where(claimed(id, holder))).rowCount ?? 0) > 0
    },

    async nextDue () {
      const result = await db.execute<{ due: Date | string | null }>(sql`
        SELECT least(
          (SELECT min(next_attempt_at) FROM mail_outbox WHERE state = 'pending'),
          (SELECT min(claim_until) FROM mail_outbox WHERE state = 'sending')) AS due`)
      const due = result.rows[0]?.due ?? null
      return due === null ? null : new Date(due)
    },

    async countPending () {
      return (await db.select({ n: sql<number>`count(*)::int` }).from(mailOutbox)
        .where(sql`${mailOutbox.state} IN ('pending', 'sending')`))[0]?.n ?? 0
    },

    async listDead (limit): Promise<DeadMessage[]> {
      return await db.select({
        id: mailOutbox.id,
        kind: mailOutbox.kind,
        recipient: mailOutbox.recipient,
        attempts: mailOutbox.attempts,
        lastError: mailOutbox.lastError,
        createdAt: mailOutbox.createdAt
      }).from(mailOutbox).where(eq(mailOutbox.state, 'dead')).orderBy(asc(mailOutbox.id)).limit(limit)
    },

    async retry (id, now) {
      return ((await db.update(mailOutbox)
        .set({ state: 'pending', attempts: 0, nextAttemptAt: now })
        .where(and(eq(mailOutbox.id, id), eq(mailOutbox.state, 'dead')))).rowCount ?? 0) > 0
    },

    async pruneSentBefore (before, batchSize) {
      let deleted = 0
      for (;;) {
        const n = (await db.delete(mailOutbox)
          .where(sql`${mailOutbox.id} IN (SELECT id FROM ${mailOutbox} WHERE ${mailOutbox.state} = 'sent' AND ${mailOutbox.sentAt} <= ${before.toISOString()} LIMIT ${batchSize})`)).rowCount ?? 0
        deleted += n
        if (n < batchSize) break
      }
      return deleted
    }
  }
}
