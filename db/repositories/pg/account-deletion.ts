/** Deleting an account on PostgreSQL: the same contract as db/repositories/account-deletion.ts. */
import { and, eq, sql } from 'drizzle-orm'
import { PERSONAL_DETAIL_KEYS, type AccountDeletionRepository } from '../account-deletion.js'
import type { PgDb } from '../../pg/client.js'
import { auditEvents, users } from '../../pg/schema.js'
import { transactionAlongside } from './alongside.js'

export function createPgAccountDeletionRepository (db: PgDb): AccountDeletionRepository {
  // Constant names, written into the statement (a bound array would be spread into a list).
  const keys = sql.raw(`ARRAY[${PERSONAL_DETAIL_KEYS.map((k) => `'${k}'`).join(', ')}]::text[]`)
  return {
    async delete (d, alongside) {
      const result = await transactionAlongside(db, async (tx, write) => {
        const where = d.epoch === null ? eq(users.id, d.userId) : and(eq(users.id, d.userId), eq(users.credentialEpoch, d.epoch))
        const [gone] = await tx.delete(users).where(where).returning({ email: users.email })
        if (gone === undefined) return { deleted: false as const }
        await tx.update(auditEvents)
          .set({ ip: null, userAgent: null, detail: sql`${auditEvents.detail} - ${keys}` })
          .where(eq(auditEvents.userId, d.userId))
        await write(() => { alongside(gone.email) })
        return { deleted: true as const, email: gone.email }
      })
      return result
    }
  }
}
