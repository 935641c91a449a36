/**
 * The audit log: one row per security event. Writing is one prepared INSERT; reading is by
 * newest first (with filters) or by id for a tail; pruning deletes in short batches.
 *
 * Callers pass only what may be kept: ids, addresses, user agents, reasons and counts. The
 * detail is a small JSON object and never holds a password, token or hash.
 */
import { and, desc, eq, gt, lt, lte, sql, type SQL } from 'drizzle-orm'
import type { Db } from '../client.js'
import { auditEvents } from '../schema.js'

export const AUDIT_EVENT_TYPES = [
  'register',
  'register_address_taken',
  'email_verification_sent',
  'email_verified',
  'login_succeeded',
  'login_failed',
  'refresh_reuse_detected',
  'logout',
  'logout_all',
  'password_changed',
  'password_reset_requested',
  'password_reset_triggered',
  'password_reset',
  'session_revoked',
  'user_created',
  'user_disabled',
  'user_enabled',
  'roles_changed',
  'key_rotated',
  'passkey_registered',
  'passkey_renamed',
  'passkey_deleted',
  'passkey_clone_detected',
  'totp_enabled',
  'totp_disabled',
  'recovery_codes_generated',
  'recovery_code_used',
  'mfa_failed',
  'reauthenticated',
  'email_change_requested',
  'email_changed',
  'email_change_undone',
  'account_deleted'
] as const

export type AuditEventType = typeof AUDIT_EVENT_TYPES[number]

export interface AuditEventInput {
  type: AuditEventType
  at: Date
  userId?: string | null
  sessionId?: string | null
  ip?: string | null
  userAgent?: string | null
  requestId?: string | null
  detail?: Record<string, unknown> | null
}

export interface AuditEvent {
  id: number
  at: Date
  type: string
  userId: string | null
  sessionId: string | null
  ip: string | null
  userAgent: string | null
  requestId: string | null
  detail: Record<string, unknown> | null
}

export interface AuditQuery {
  userId?: string
  type?: string
  /** Only events with an id below this one (paging backwards). */
  beforeId?: number
  /** Only events with an id above this one (tailing forwards). */
  afterId?: number
  limit?: number
}

const USER_AGENT_MAX = 512

export function createAuditRepository (db: Db) {
  const insert = db.insert(auditEvents).values({
    at: sql.placeholder('at'),
    type: sql.placeholder('type'),
    userId: sql.placeholder('userId'),
    sessionId: sql.placeholder('sessionId'),
    ip: sql.placeholder('ip'),
    userAgent: sql.placeholder('userAgent'),
    requestId: sql.placeholder('requestId'),
    detail: sql.placeholder('detail')
  }).prepare()

  /**
   * One INSERT, synchronous: inside a better-sqlite3 transaction it joins that transaction. Its
   * failure is thrown here; `_onFailure` is for backends that insert later (pg/audit.ts).
   */
  function recordNow (e: AuditEventInput, _onFailure?: (err: unknown) => void): void {
    insert.run({
      at: e.at,
      type: e.type,
      userId: e.userId ?? null,
      sessionId: e.sessionId ?? null,
      ip: e.ip ?? null,
      userAgent: e.userAgent === undefined || e.userAgent === null ? null : e.userAgent.slice(0, USER_AGENT_MAX),
      requestId: e.requestId ?? null,
      detail: e.detail ?? null
    })
  }

  return {
    recordNow,
    /** One INSERT in its own transaction (one commit). */
    async record (e: AuditEventInput): Promise<void> {
      recordNow(e)
    },

    /**
     * Events matching the filters. Newest first, unless `afterId` is given: then oldest first,
     * which is what a tail that follows new events needs.
     */
    async list (q: AuditQuery = {}): Promise<AuditEvent[]> {
      const where: SQL[] = []
      if (q.userId !== undefined) where.push(eq(auditEvents.userId, q.userId))
      if (q.type !== undefined) where.push(eq(auditEvents.type, q.type))
      if (q.beforeId !== undefined) where.push(lt(auditEvents.id, q.beforeId))
      if (q.afterId !== undefined) where.push(gt(auditEvents.id, q.afterId))
      return db.select().from(auditEvents)
        .where(where.length === 0 ? undefined : and(...where))
        .orderBy(q.afterId !== undefined ? auditEvents.id : desc(auditEvents.id))
        .limit(Math.min(Math.max(q.limit ?? 50, 1), 1000))
        .all()
    },

    /** Deletes events older than `before`, `batchSize` rows per statement, yielding in between. */
    async pruneBefore (before: Date, batchSize = 1000): Promise<number> {
      let deleted = 0
      for (;;) {
        const n = db.delete(auditEvents)
          .where(sql`${auditEvents.id} IN (SELECT id FROM ${auditEvents} WHERE ${lte(auditEvents.at, before)} LIMIT ${batchSize})`)
          .run().changes
        deleted += n
        if (n < batchSize) break
        await new Promise((resolve) => setImmediate(resolve))
      }
      return deleted
    },

    async count (): Promise<number> {
      return db.select({ n: sql<number>`count(*)` }).from(auditEvents).get()?.n ?? 0
    }
  }
}

export type AuditRepository = ReturnType<typeof createAuditRepository>
