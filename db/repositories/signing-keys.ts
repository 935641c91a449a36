import { eq, sql } from 'drizzle-orm'
import type { Db } from '../client.js'
import { signingKeys } from '../schema.js'

export type SigningKeyRow = typeof signingKeys.$inferSelect
export type NewSigningKey = typeof signingKeys.$inferInsert

export function createSigningKeysRepository (db: Db) {
  return {
    async list (): Promise<SigningKeyRow[]> {
      return db.select().from(signingKeys).orderBy(signingKeys.activatesAt).all()
    },

    /**
     * Runs `change` against the ring as it is inside one IMMEDIATE transaction: the write lock
     * is taken before the ring is read, so two instances (or the CLI and a server) that decide
     * at the same moment see each other's result and never rotate twice. `change` must be
     * synchronous and gets the rows it decides on plus writers.
     */
    async update<T> (change: (rows: SigningKeyRow[], ops: {
      insert: (row: NewSigningKey) => void
      retire: (kid: string, retiredAt: Date, removeAfter: Date) => void
      promote: (kid: string) => void
      remove: (kid: string) => void
      reseal: (kid: string, privateKey: string) => void
    }) => T): Promise<T> {
      return db.transaction((tx) => {
        const rows = tx.select().from(signingKeys).orderBy(signingKeys.activatesAt).all()
        return change(rows, {
          insert: (row) => { tx.insert(signingKeys).values(row).run() },
          retire: (kid, retiredAt, removeAfter) => {
            tx.update(signingKeys).set({ state: 'retired', retiredAt, removeAfter }).where(eq(signingKeys.kid, kid)).run()
          },
          promote: (kid) => { tx.update(signingKeys).set({ state: 'current' }).where(eq(signingKeys.kid, kid)).run() },
          remove: (kid) => { tx.delete(signingKeys).where(eq(signingKeys.kid, kid)).run() },
          reseal: (kid, privateKey) => { tx.update(signingKeys).set({ privateKey }).where(eq(signingKeys.kid, kid)).run() }
        })
      }, { behavior: 'immediate' })
    },

    /** What tells a change of the ring: kid, state and times of every key, without key material. */
    async stamps (): Promise<Array<Pick<SigningKeyRow, 'kid' | 'state' | 'activatesAt' | 'removeAfter'>>> {
      return db.select({ kid: signingKeys.kid, state: signingKeys.state, activatesAt: signingKeys.activatesAt, removeAfter: signingKeys.removeAfter }).from(signingKeys).all()
    },

    async count (): Promise<number> {
      return db.select({ n: sql<number>`count(*)` }).from(signingKeys).get()?.n ?? 0
    }
  }
}

export type SigningKeysRepository = ReturnType<typeof createSigningKeysRepository>
