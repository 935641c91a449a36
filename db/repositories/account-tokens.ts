/**
 * One-time account tokens (table `account_tokens`, db/schema.ts): what the verification,
 * password-reset and address-change flows mail to an account's owner. This module issues and
 * finds them; spending one is the flow's own transaction (it changes the account in the same
 * commit), in the flow's repository.
 */
import { and, eq, gt, lte } from 'drizzle-orm'
import type { Db } from '../client.js'
import { accountTokens } from '../schema.js'

export type AccountTokenPurpose = 'verify_email' | 'reset_password' | 'change_email' | 'undo_email_change'

export interface NewAccountToken {
  /** SHA-256 of the token (src/auth/account-tokens.ts); the token itself is never stored. */
  tokenHash: Buffer
  userId: string
  purpose: AccountTokenPurpose
  email: string | null
  /** The account's `passwordChangedAt` now (a reset token is void once it moves). */
  passwordStamp: Date
  now: Date
  expiresAt: Date
}

export interface AccountToken {
  tokenHash: Buffer
  userId: string
  purpose: AccountTokenPurpose
  email: string | null
  passwordStamp: Date
  createdAt: Date
  expiresAt: Date
}

export interface AccountTokensRepository {
  /**
   * Stores a token, deleting the account's older tokens of the same purpose (a newer token
   * voids them), with `alongside` (synchronous: it enqueues the mail that carries the token and
   * records audit events) in the same transaction.
   */
  issue: (token: NewAccountToken, alongside?: () => void) => Promise<void>
  /** The live token with this hash and purpose (not expired at `now`), or null. Spends nothing. */
  find: (tokenHash: Buffer, purpose: AccountTokenPurpose, now: Date) => Promise<AccountToken | null>
  /** Deletes tokens that expired at or before `before`; answers how many. */
  pruneExpired: (before: Date) => Promise<number>
}

export function createAccountTokensRepository (db: Db): AccountTokensRepository {
  const issueTx = db.$client.transaction((t: NewAccountToken, alongside?: () => void): void => {
    db.delete(accountTokens).where(and(eq(accountTokens.userId, t.userId), eq(accountTokens.purpose, t.purpose))).run()
    db.insert(accountTokens).values({
      tokenHash: t.tokenHash,
      userId: t.userId,
      purpose: t.purpose,
      email: t.email,
      passwordStamp: t.passwordStamp,
      createdAt: t.now,
      expiresAt: t.expiresAt
    }).run()
    alongside?.()
  })

  return {
    async issue (t, alongside) {
      issueTx.immediate(t, alongside)
    },

    async find (tokenHash, purpose, now) {
      const row = db.select().from(accountTokens)
        .where(and(eq(accountTokens.tokenHash, tokenHash), eq(accountTokens.purpose, purpose), gt(accountTokens.expiresAt, now)))
        .get()
      return row ?? null
    },

    async pruneExpired (before) {
      return db.delete(accountTokens).where(lte(accountTokens.expiresAt, before)).run().changes
    }
  }
}
