/**
 * The signing-key ring on PostgreSQL (db/repositories/signing-keys.ts). `update` takes a
 * transaction-level advisory lock before it reads the ring, so two instances (or the CLI and a
 * server) that decide at the same moment run one after the other, the second seeing the
 * first's result: a rotation happens once.
 */
import { eq, sql } from 'drizzle-orm'
import type { SigningKeyRow, NewSigningKey } from '../signing-keys.js'
import type { PgDb } from '../../pg/client.js'
import { signingKeys } from '../../pg/schema.js'

const RING_LOCK = sql`SELECT pg_advisory_xact_lock(hashtextextended('signing_keys', 0))`

export function createPgSigningKeysRepository (db: PgDb) {
  return {
    async list (): Promise<SigningKeyRow[]> {
      return await db.select().from(signingKeys).orderBy(signingKeys.activatesAt)
    },

    async update<T> (change: (rows: SigningKeyRow[], ops: {
      insert: (row: NewSigningKey) => void
      retire: (kid: string, retiredAt: Date, removeAfter: Date) => void
      promote: (kid: string) => void
      remove: (kid: string) => void
      reseal: (kid: string, privateKey: string) => void
    }) => T): Promise<T> {
      return await db.transaction(async (tx) => {
        await tx.execute(RING_LOCK)
        const rows = await tx.select().from(signingKeys).orderBy(signingKeys.activatesAt)
        // `change` is synchronous: its writes are queued and run in order, in this transaction.
        const writes: Array<() => Promise<unknown>> = []
        const result = change(rows, {
          insert: (row) => { writes.push(async () => await tx.insert(signingKeys).values(row as typeof signingKeys.$inferInsert)) },
          retire: (kid, retiredAt, removeAfter) => {
            writes.push(async () => await tx.update(signingKeys).set({ state: 'retired', retiredAt, removeAfter }).where(eq(signingKeys.kid, kid)))
          },
          promote: (kid) => { writes.push(async () => await tx.update(signingKeys).set({ state: 'current' }).where(eq(signingKeys.kid, kid))) },
          remove: (kid) => { writes.push(async () => await tx.delete(signingKeys).where(eq(signingKeys.kid, kid))) },
          reseal: (kid, privateKey) => { writes.push(async () => await tx.update(signingKeys).set({ privateKey }).where(eq(signingKeys.kid, kid))) }
        })
        for (const write of writes) await write()
        return result
      })
    },

    async stamps (): Promise<Array<Pick<SigningKeyRow, 'kid' | 'state' | 'activatesAt' | 'removeAfter'>>> {
      return await db.select({ kid: signingKeys.kid, state: signingKeys.state, activatesAt: signingKeys.activatesAt, removeAfter: signingKeys.removeAfter }).from(signingKeys)
    },

    async count (): Promise<number> {
      return (await db.select({ n: sql<number>`count(*)::int` }).from(signingKeys))[0]?.n ?? 0
    }
  }
}
