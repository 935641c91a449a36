/** Account tokens on PostgreSQL: the same contract as db/repositories/account-tokens.ts. */
import { and, eq, gt, lte } from 'drizzle-orm'
import type { AccountTokensRepository } from '../account-tokens.js'
import type { PgDb } from '../../pg/client.js'
import { accountTokens } from '../../pg/schema.js'
import { transactionAlongside } from './alongside.js'

export function createPgAccountTokensRepository (db: PgDb): AccountTokensRepository {
  return {
    async issue (t, alongside) {
      await transactionAlongside(db, async (tx, write) => {
        await tx.delete(accountTokens).where(and(eq(accountTokens.userId, t.userId), eq(accountTokens.purpose, t.purpose)))
        await tx.insert(accountTokens).values({
          tokenHash: t.tokenHash,
          userId: t.userId,
          purpose: t.purpose,
          email: t.email,
          passwordStamp: t.passwordStamp,
          createdAt: t.now,
          expiresAt: t.expiresAt
        })
        if (alongside !== undefined) await write(alongside)
      })
    },

    async find (tokenHash, purpose, now) {
      const [row] = await db.select().from(accountTokens)
        .where(and(eq(accountTokens.tokenHash, tokenHash), eq(accountTokens.purpose, purpose), gt(accountTokens.expiresAt, now)))
      return row ?? null
    },

    async pruneExpired (before) {
      return (await db.delete(accountTokens).where(lte(accountTokens.expiresAt, before))).rowCount ?? 0
    }
  }
}
