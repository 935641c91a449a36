/**
 * What a PostgreSQL repository transaction writes besides its own rows: the audit events and
 * outbox messages its synchronous `alongside` recorded (`audit.recordNow`, `outbox.enqueue`),
 * collected while it runs and inserted in the same transaction, so they commit or roll back
 * with the change that caused them.
 */
import type { PgDb } from '../../pg/client.js'
import { auditEvents, mailOutbox } from '../../pg/schema.js'
import { AuditInsertFailed, auditRow, collectAudit, withAuditRetry } from './audit.js'
import { collectOutbox } from './outbox.js'

export type PgTx = Parameters<Parameters<PgDb['transaction']>[0]>[0]

/**
 * A repository transaction that writes what an `alongside` records: `body(tx, write)` makes the
 * change and calls `write(alongside)` inside it (once, or not at all). Every such transaction
 * goes through here, so each one keeps SQLite's rule that a failed audit write never fails the
 * change it records: when the insert of its audit events fails, their recorders are told (they
 * log it) and the whole transaction runs again without them (`withAuditRetry`, ./audit.ts). The
 * outbox workers of the messages it enqueued are woken once it has committed.
 */
export async function transactionAlongside<T> (db: PgDb, body: (tx: PgTx, write: (alongside: () => void) => Promise<void>) => Promise<T>): Promise<T> {
  return await withAuditRetry(async (audit) => {
    let afterCommit = (): void => {}
    const result = await db.transaction(async (tx) => await body(tx, async (alongside) => {
      afterCommit = await writeAlongside(tx, alongside, audit)
    }))
    afterCommit()
    return result
  })
}

/**
 * Runs `alongside` and inserts what it recorded, in `tx` (transactionAlongside's `write`); a
 * failed insert of the audit events is an AuditInsertFailed, for withAuditRetry (./audit.ts).
 * Answers a function to call once the transaction has committed: it wakes the outbox worker of
 * each message enqueued (woken before the commit, a worker could look and find nothing yet).
 */
async function writeAlongside (tx: PgTx, alongside: () => void, audit = true): Promise<() => void> {
  let messages: ReturnType<typeof collectOutbox> = []
  const events = collectAudit(() => { messages = collectOutbox(alongside) })
  // With `audit` false (withAuditRetry's second attempt, the events' insert having failed),
  // the events are left out and everything else is written.
  if (audit && events.length > 0) {
    try {
      await tx.insert(auditEvents).values(events.map((e) => auditRow(e.event)))
    } catch (err) {
      throw new AuditInsertFailed(events, err)
    }
  }
  if (messages.length > 0) await tx.insert(mailOutbox).values(messages.map((m) => m.row))
  const wakes = new Set(messages.map((m) => m.wake))
  return () => { for (const wake of wakes) wake() }
}
