import { eq } from 'drizzle-orm'
import type { Db } from '../client.js'
import { serverSecrets } from '../schema.js'

type Decide<T> = (stored: Buffer | undefined) => { result: T, store?: Buffer }

export function createServerSecretsRepository (db: Db) {
  function decideAndWrite<T> (name: string, decide: Decide<T>): T {
    return db.transaction((tx) => {
      const row = tx.select().from(serverSecrets).where(eq(serverSecrets.name, name)).get()
      const { result, store } = decide(row?.value)
      if (store !== undefined) {
        if (row === undefined) tx.insert(serverSecrets).values({ name, value: store, createdAt: new Date() }).run()
        else tx.update(serverSecrets).set({ value: store }).where(eq(serverSecrets.name, name)).run()
      }
      return result
    }, { behavior: 'immediate' })
  }

  return {
    /**
     * Reads the named secret's stored value and decides, inside one IMMEDIATE transaction,
     * what to write: `decide(stored)` gets the value as stored (undefined when there is none)
     * and answers the value to return and, when the row must be created or rewritten (first
     * start, or sealing a clear value), the value to store. When two processes start at once,
     * the second waits for the first's commit and sees its row, so both end up with the same
     * secret. `decide` must be synchronous.
     */
    async resolve<T> (name: string, decide: Decide<T>): Promise<T> {
      // A value rewritten here (a clear secret being sealed) must not survive in the page's
      // free space: secure_delete zeroes what the update frees. On for this call only.
      const sqlite = db.$client
      const secureDelete = sqlite.pragma('secure_delete', { simple: true }) as number
      sqlite.pragma('secure_delete = ON')
      try {
        return decideAndWrite(name, decide)
      } finally {
        sqlite.pragma(`secure_delete = ${secureDelete === 1 ? 'ON' : 'OFF'}`)
      }
    }
  }
}

export type ServerSecretsRepository = ReturnType<typeof createServerSecretsRepository>
