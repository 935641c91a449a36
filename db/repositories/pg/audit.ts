/**
 * The audit log on PostgreSQL (db/repositories/audit.ts says what it keeps and never keeps).
 *
 * `recordNow` is synchronous, for events written in the transaction of the change they record
 * (a login's session, a detected reuse): on PostgreSQL a transaction is asynchronous, so the
 * repository that runs it collects the events `recordNow` is given while its `alongside` runs
 * (`collectAudit`) and inserts them in that transaction, before its commit. A failed insert of
 * those events aborts that transaction (PostgreSQL aborts a transaction at its first failed
 * statement); `withAuditRetry` then tells each event's recorder, which logs it, and writes the
 * change again without them: as on SQLite, a failed audit write never fails the change it
 * records. Retrying only then keeps the common path free of a savepoint's round trips.
 */
import { and, desc, eq, gt, lt, lte, sql, type SQL } from 'drizzle-orm'
import type { AuditEvent, AuditEventInput, AuditQuery } from '../audit.js'
import type { PgDb } from '../../pg/client.js'
import { auditEvents } from '../../pg/schema.js'

const USER_AGENT_MAX = 512

/** An event given to `recordNow`, and whom to tell when its insert fails after `recordNow` returned. */
export interface CollectedEvent {
  event: AuditEventInput
  onFailure?: ((err: unknown) => void) | undefined
}

let collecting: CollectedEvent[] | null = null

/** Runs `fn` (synchronous) and answers the audit events `recordNow` was given meanwhile. */
export function collectAudit (fn: () => void): CollectedEvent[] {
  const outer = collecting
  const events: CollectedEvent[] = []
  collecting = events
  try {
    fn()
  } finally {
    collecting = outer
  }
  return events
}

/** The insert of the events collected for a transaction failed: the transaction is aborted. */
export class AuditInsertFailed extends Error {
  override name = 'AuditInsertFailed'
  constructor (readonly events: CollectedEvent[], cause: unknown) {
    super('the audit events of a transaction could not be inserted', { cause })
  }
}

/**
 * Runs `write(true)`; when the insert of its audit events failed and every one of them has a
 * recorder to tell, tells them and runs `write(false)`, which writes the change again without
 * its events (the code that records them runs again; what it records is left out). Any other
 * failure is the write's own.
 */
export async function withAuditRetry<T> (write: (audit: boolean) => Promise<T>): Promise<T> {
  try {
    return await write(true)
  } catch (err) {
    if (!(err instanceof AuditInsertFailed)) throw err
    if (err.events.some((e) => e.onFailure === undefined)) throw err.cause
    for (const e of err.events) e.onFailure!(err.cause)
    return await write(false)
  }
}

export function auditRow (e: AuditEventInput): typeof auditEvents.$inferInsert {
  return {
    at: e.at,
    type: e.type,
    userId: e.userId ?? null,
    sessionId: e.sessionId ?? null,
    ip: e.ip ?? null,
    userAgent: e.userAgent === undefined || e.userAgent === null ? null : e.userAgent.slice(0, USER_AGENT_MAX),
    requestId: e.requestId ?? null,
    detail: e.detail ?? null
  }
}

export function createPgAuditRepository (db: PgDb) {
  return {
    recordNow (e: AuditEventInput, onFailure?: (err: unknown) => void): void {
      if (collecting === null) throw new Error('audit recordNow on PostgreSQL is for events inside a repository transaction (alongside); use record')
      collecting.push({ event: e, onFailure })
    },

    async record (e: AuditEventInput): Promise<void> {
      await db.insert(auditEvents).values(auditRow(e))
    },

    async list (q: AuditQuery = {}): Promise<AuditEvent[]> {
      const where: SQL[] = []
      if (q.userId !== undefined) where.push(eq(auditEvents.userId, q.userId))
      if (q.type !== undefined) where.push(eq(auditEvents.type, q.type))
      if (q.beforeId !== undefined) where.push(lt(auditEvents.id, q.beforeId))
      if (q.afterId !== undefined) where.push(gt(auditEvents.id, q.afterId))
      return await db.select().from(auditEvents)
        .where(where.length === 0 ? undefined : and(...where))
        .orderBy(q.afterId !== undefined ? auditEvents.id : desc(auditEvents.id))
        .limit(Math.min(Math.max(q.limit ?? 50, 1), 1000))
    },

    async pruneBefore (before: Date, batchSize = 1000): Promise<number> {
      let deleted = 0
      for (;;) {
        const n = (await db.delete(auditEvents)
          .where(sql`${auditEvents.id} IN (SELECT id FROM ${auditEvents} WHERE ${lte(auditEvents.at, before)} LIMIT ${batchSize})`)).rowCount ?? 0
        deleted += n
        if (n < batchSize) break
      }
      return deleted
    },

    async count (): Promise<number> {
      return (await db.select({ n: sql<number>`count(*)::int` }).from(auditEvents))[0]?.n ?? 0
    }
  }
}
