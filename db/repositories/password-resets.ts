/**
 * The password-reset flow's writes (src/auth/password-reset.ts says the rules): issuing a
 * `reset_password` account token with its mail, and spending one to set a new password. Each is
 * one transaction whose row counts decide, so two requests racing on one account or one token
 * cannot both win, on either backend.
 */
import { and, count, eq, gt, isNull, sql } from 'drizzle-orm'
import type { Db } from '../client.js'
import { accountTokens, auditEvents, sessions, users } from '../schema.js'

/**
 * The audit event a self-service reset request records (in its `alongside`): the per-account
 * limit counts these, so that it holds across instances and restarts without a store of its own.
 */
export const RESET_REQUESTED_EVENT = 'password_reset_requested'

export interface ResetRequest {
  userId: string
  /** SHA-256 of the token (src/auth/account-tokens.ts); the token itself is never stored. */
  tokenHash: Buffer
  now: Date
  expiresAt: Date
  /**
   * Self-service: nothing is issued once the account has had `max` requests recorded since
   * `since`. Null (an administrator's request): no limit.
   */
  limit: { max: number, since: Date } | null
}

export type ResetRequestOutcome =
  | { outcome: 'issued', email: string }
  | { outcome: 'no_account' | 'no_email' | 'disabled' | 'limited' }

export interface ResetSpend {
  tokenHash: Buffer
  /** The new password's hash, made before the transaction (argon2 is asynchronous). */
  passwordHash: string
  now: Date
}

export interface ResetDone {
  userId: string
  username: string
  email: string | null
  endedSessions: number
}

export interface PasswordResetsRepository {
  /**
   * Issues a reset token for an enabled account with an address, in one transaction: the
   * account read (and on PostgreSQL locked) there, the per-account limit checked, the account's
   * older reset tokens deleted (a newer token voids them), the token stored with the account's
   * password stamp, and `alongside(email)` run (synchronous: it enqueues the mail to that
   * address and records the audit event), all committed together or not at all.
   */
  request: (r: ResetRequest, alongside: (email: string) => void) => Promise<ResetRequestOutcome>
  /**
   * Spends a live reset token and sets the password, in one transaction: the token deleted (the
   * deletion's row count decides between two spends of one token), then, if its account is
   * enabled and its password unchanged since the token was issued, the new hash, a new
   * password stamp and security stamp, every session ended, and `alongside` (mail, audit).
   * Null when the token is unknown, spent, expired or void; a void token is deleted all the same.
   */
  spend: (s: ResetSpend, alongside: (done: ResetDone) => void) => Promise<ResetDone | null>
}

export function createPasswordResetsRepository (db: Db): PasswordResetsRepository {
  const requestTx = db.$client.transaction((r: ResetRequest, alongside: (email: string) => void): ResetRequestOutcome => {
    const user = db.select({ email: users.email, disabled: users.disabled, passwordChangedAt: users.passwordChangedAt })
      .from(users).where(eq(users.id, r.userId)).get()
    if (user === undefined) return { outcome: 'no_account' }
    if (user.disabled) return { outcome: 'disabled' }
    if (user.email === null) return { outcome: 'no_email' }
    if (r.limit !== null) {
      const recent = db.select({ n: count() }).from(auditEvents)
        .where(and(eq(auditEvents.userId, r.userId), eq(auditEvents.type, RESET_REQUESTED_EVENT), gt(auditEvents.at, r.limit.since))).get()?.n ?? 0
      if (recent >= r.limit.max) return { outcome: 'limited' }
    }
    db.delete(accountTokens).where(and(eq(accountTokens.userId, r.userId), eq(accountTokens.purpose, 'reset_password'))).run()
    db.insert(accountTokens).values({
      tokenHash: r.tokenHash,
      userId: r.userId,
      purpose: 'reset_password',
      email: user.email,
      passwordStamp: user.passwordChangedAt,
      createdAt: r.now,
      expiresAt: r.expiresAt
    }).run()
    alongside(user.email)
    return { outcome: 'issued', email: user.email }
  })

  const spendTx = db.$client.transaction((s: ResetSpend, alongside: (done: ResetDone) => void): ResetDone | null => {
    const token = db.delete(accountTokens)
      .where(and(eq(accountTokens.tokenHash, s.tokenHash), eq(accountTokens.purpose, 'reset_password'), gt(accountTokens.expiresAt, s.now)))
      .returning({ userId: accountTokens.userId, passwordStamp: accountTokens.passwordStamp }).all()[0]
    if (token === undefined) return null
    const changed = db.update(users)
      .set({ passwordHash: s.passwordHash, updatedAt: s.now, passwordChangedAt: s.now, credentialEpoch: sql`${users.credentialEpoch} + 1` })
      .where(and(eq(users.id, token.userId), eq(users.disabled, false), eq(users.passwordChangedAt, token.passwordStamp)))
      .returning({ username: users.username, email: users.email }).all()[0]
    if (changed === undefined) return null
    const endedSessions = db.update(sessions).set({ revokedAt: s.now, revokedReason: 'password_reset' })
      .where(and(eq(sessions.userId, token.userId), isNull(sessions.revokedAt))).run().changes
    const done = { userId: token.userId, username: changed.username, email: changed.email, endedSessions }
    alongside(done)
    return done
  })

  return {
    async request (r, alongside) {
      return requestTx.immediate(r, alongside)
    },

    async spend (s, alongside) {
      return spendTx.immediate(s, alongside)
    }
  }
}
