/**
 * Server secrets on PostgreSQL (db/repositories/server-secrets.ts). Two instances starting at
 * once take a transaction-level advisory lock on the secret's name before reading it, so the
 * second waits for the first's commit and sees its row: both end up with the same secret.
 */
import { eq, sql } from 'drizzle-orm'
import type { PgDb } from '../../pg/client.js'
import { serverSecrets } from '../../pg/schema.js'

type Decide<T> = (stored: Buffer | undefined) => { result: T, store?: Buffer }

export function createPgServerSecretsRepository (db: PgDb) {
  return {
    async resolve<T> (name: string, decide: Decide<T>): Promise<T> {
      return await db.transaction(async (tx) => {
        await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtextextended(${`server_secret:${name}`}, 0))`)
        const [row] = await tx.select().from(serverSecrets).where(eq(serverSecrets.name, name))
        const { result, store } = decide(row?.value)
        if (store !== undefined) {
          if (row === undefined) await tx.insert(serverSecrets).values({ name, value: store, createdAt: new Date() })
          else await tx.update(serverSecrets).set({ value: store }).where(eq(serverSecrets.name, name))
        }
        return result
      })
    }
  }
}
