/**
 * The audit log on PostgreSQL (db/repositories/audit.ts says what it keeps and never keeps).
 *
 * `recordNow` is synchronous, for events written in the transaction of the change they record
 * (a login's session, a detected reuse): on PostgreSQL a transaction is asynchronous, so the
 * repository that runs it collects the events `recordNow` is given while its `alongside` runs
 * (`collectAudit`) and inserts them in that transaction, before its commit.
 */
import { and, desc, eq, gt, lt, lte, sql, type SQL } from 'drizzle-orm'
import type { AuditEvent, AuditEventInput, AuditQuery } from '../audit.js'
import type { PgDb } from '../../pg/client.js'
import { auditEvents } from '../../pg/schema.js'

const USER_AGENT_MAX = 512

let collecting: AuditEventInput[] | null = null

/** Runs `fn` (synchronous) and answers the audit events `recordNow` was given meanwhile. */
export function collectAudit (fn: () => void): AuditEventInput[] {
  const outer = collecting
  const events: AuditEventInput[] = []
  collecting = events
  try {
    fn()
  } finally {
    collecting = outer
  }
  return events
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
    recordNow (e: AuditEventInput): void {
      if (collecting === null) throw new Error('audit recordNow on PostgreSQL is for events inside a repository transaction (alongside); use record')
      collecting.push(e)
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
