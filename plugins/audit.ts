/**
 * `app.audit.record(request, type, fields)`: writes one security event to the audit log, with
 * the request's client address, user agent and request id. Called by the routes and the
 * admin routes after the fact they record has happened.
 *
 * Recording never breaks the request it belongs to: a failed insert (disk full, database
 * locked past the busy timeout) is logged and the request goes on. Only what is safe to keep
 * goes in: ids, reasons, counts, roles; never a password, token or hash.
 */
import { isIP } from 'node:net'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { AuditEventInput, AuditEventType } from '../db/repositories/audit.js'

export interface AuditFields {
  userId?: string | null
  sessionId?: string | null
  detail?: Record<string, unknown>
}

export interface AuditRecorder {
  /** Records the event in its own commit. */
  record: (request: FastifyRequest, type: AuditEventType, fields?: AuditFields, now?: Date) => void
  /**
   * Records the event now, synchronously: called inside a database transaction (a login's
   * session insert), the event joins that transaction's commit instead of paying for its own.
   * A failed insert is only logged, unless SQLite rolled the whole transaction back with it.
   */
  recordNow: (request: FastifyRequest, type: AuditEventType, fields?: AuditFields, now?: Date) => void
  /**
   * Resolves once every event `record` was given so far is written (or its failure logged). On
   * PostgreSQL an insert is a round trip that may end after the answer it belongs to; closing
   * the app waits for them, so that none is lost at shutdown.
   */
  settled: () => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    audit: AuditRecorder
  }
}

export default fp(async function auditPlugin (app) {
  const { repos } = app
  const eventOf = (request: FastifyRequest, type: AuditEventType, fields: AuditFields, now: Date): AuditEventInput => {
    const userAgent = request.headers['user-agent']
    return {
      type,
      at: now,
      userId: fields.userId ?? null,
      sessionId: fields.sessionId ?? null,
      // Only an address: behind a proxy request.ip comes from a header that may hold anything.
      ip: isIP(request.ip) !== 0 ? request.ip : null,
      userAgent: typeof userAgent === 'string' ? userAgent : null,
      requestId: request.id,
      detail: fields.detail ?? null
    }
  }
  const failed = (request: FastifyRequest, type: AuditEventType, err: unknown): void => {
    request.log.error({ err, audit: type }, 'audit event could not be recorded')
  }
  const pending = new Set<Promise<void>>()
  app.decorate('audit', {
    record (request, type, fields = {}, now = new Date()) {
      const write = repos.audit.record(eventOf(request, type, fields, now)).catch((err: unknown) => { failed(request, type, err) })
      pending.add(write)
      void write.finally(() => pending.delete(write))
    },
    async settled () {
      await Promise.all(pending)
    },
    recordNow (request, type, fields = {}, now = new Date()) {
      const { database } = app
      const inTransaction = database.inTransaction()
      try {
        // On PostgreSQL the insert comes later, in the caller's transaction: its failure is told here.
        repos.audit.recordNow(eventOf(request, type, fields, now), (err) => { failed(request, type, err) })
      } catch (err) {
        // Some errors (disk full, I/O) make SQLite roll the enclosing transaction back: then
        // the caller's own writes are gone too, and it must fail with the database's error.
        if (inTransaction && !database.inTransaction()) throw err
        failed(request, type, err)
      }
    }
  } satisfies AuditRecorder)
  // Registered after the database plugin's: closed before it, so the writes still have a database.
  app.addHook('onClose', async () => { await app.audit.settled() })
}, { name: 'audit', fastify: '5.x', dependencies: ['db'] })
