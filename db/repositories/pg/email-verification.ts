/** Spending an e-mail verification token on PostgreSQL: the same contract as db/repositories/email-verification.ts. */
import { and, eq, gt } from 'drizzle-orm'
import type { EmailVerificationRepository, VerifyEmailOutcome } from '../email-verification.js'
import type { PgDb } from '../../pg/client.js'
import { accountTokens, users } from '../../pg/schema.js'
import { transactionAlongside } from './alongside.js'

export function createPgEmailVerificationRepository (db: PgDb): EmailVerificationRepository {
  return {
    async verify (tokenHash, now, alongside) {
      const outcome = await transactionAlongside(db, async (tx, write): Promise<VerifyEmailOutcome> => {
        // The DELETE's row count decides: a concurrent spend of the same token waits for this
        // transaction's row lock, then deletes nothing.
        const [token] = await tx.delete(accountTokens)
          .where(and(eq(accountTokens.tokenHash, tokenHash), eq(accountTokens.purpose, 'verify_email'), gt(accountTokens.expiresAt, now)))
          .returning()
        if (token === undefined) return { verified: false }
        // Locked, so that an address change committing meanwhile is seen before or after, whole.
        const [user] = await tx.select({ email: users.email, emailVerifiedAt: users.emailVerifiedAt }).from(users)
          .where(eq(users.id, token.userId)).for('update')
        if (user === undefined || token.email === null || user.email !== token.email) return { verified: false }
        if (user.emailVerifiedAt === null) {
          await tx.update(users).set({ emailVerifiedAt: now, updatedAt: now }).where(eq(users.id, token.userId))
        }
        if (alongside !== undefined) await write(() => { alongside(token.userId) })
        return { verified: true, userId: token.userId }
      })
      return outcome
    }
  }
}
