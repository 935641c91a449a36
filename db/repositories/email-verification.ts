/**
 * Spending an e-mail verification token (purpose `verify_email`, db/repositories/
 * account-tokens.ts): one transaction deletes the live token (its row count decides: of two
 * concurrent spends one wins), checks that the address it was issued for is still the account's,
 * marks the address verified, and writes what `alongside` records (the audit event). A token
 * for an address the account no longer has is void: it is deleted and nothing else changes.
 */
import { and, eq, gt } from 'drizzle-orm'
import type { Db } from '../client.js'
import { accountTokens, users } from '../schema.js'

export type VerifyEmailOutcome = { verified: true, userId: string } | { verified: false }

export interface EmailVerificationRepository {
  /**
   * Spends the live `verify_email` token with this digest (not expired at `now`). `alongside`
   * (synchronous) runs inside the transaction only when the address is verified by it.
   */
  verify: (tokenHash: Buffer, now: Date, alongside?: (userId: string) => void) => Promise<VerifyEmailOutcome>
}

export function createEmailVerificationRepository (db: Db): EmailVerificationRepository {
  const verifyTx = db.$client.transaction((tokenHash: Buffer, now: Date, alongside?: (userId: string) => void): VerifyEmailOutcome => {
    const token = db.delete(accountTokens)
      .where(and(eq(accountTokens.tokenHash, tokenHash), eq(accountTokens.purpose, 'verify_email'), gt(accountTokens.expiresAt, now)))
      .returning().get()
    if (token === undefined) return { verified: false }
    const user = db.select({ email: users.email, emailVerifiedAt: users.emailVerifiedAt }).from(users).where(eq(users.id, token.userId)).get()
    if (user === undefined || token.email === null || user.email !== token.email) return { verified: false }
    if (user.emailVerifiedAt === null) {
      db.update(users).set({ emailVerifiedAt: now, updatedAt: now }).where(eq(users.id, token.userId)).run()
    }
    alongside?.(token.userId)
    return { verified: true, userId: token.userId }
  })

  return {
    async verify (tokenHash, now, alongside) {
      return verifyTx.immediate(tokenHash, now, alongside)
    }
  }
}
