/**
 * The password-reset flow's writes on PostgreSQL: the same contract as
 * db/repositories/password-resets.ts. A request locks the account's row (`FOR UPDATE`) first, so
 * that two requests for one account count against its limit one after the other; a spend's
 * UPDATE of the row waits for a login holding it `FOR SHARE` or a password change holding it,
 * and then sees their outcome (a changed password stamp voids the token).
 */
import { and, count, eq, gt, isNull, sql } from 'drizzle-orm'
import { RESET_REQUESTED_EVENT, type PasswordResetsRepository, type ResetDone, type ResetRequestOutcome } from '../password-resets.js'
import type { PgDb } from '../../pg/client.js'
import { accountTokens, auditEvents, sessions, users } from '../../pg/schema.js'
import { transactionAlongside } from './alongside.js'

export function createPgPasswordResetsRepository (db: PgDb): PasswordResetsRepository {
  return {
    async request (r, alongside) {
      const outcome = await transactionAlongside(db, async (tx, write): Promise<ResetRequestOutcome> => {
        const [user] = await tx.select({ email: users.email, disabled: users.disabled, passwordChangedAt: users.passwordChangedAt })
          .from(users).where(eq(users.id, r.userId)).for('update')
        if (user === undefined) return { outcome: 'no_account' }
        if (user.disabled) return { outcome: 'disabled' }
        if (user.email === null) return { outcome: 'no_email' }
        if (r.limit !== null) {
          const [recent] = await tx.select({ n: count() }).from(auditEvents)
            .where(and(eq(auditEvents.userId, r.userId), eq(auditEvents.type, RESET_REQUESTED_EVENT), gt(auditEvents.at, r.limit.since)))
          if ((recent?.n ?? 0) >= r.limit.max) return { outcome: 'limited' }
        }
        await tx.delete(accountTokens).where(and(eq(accountTokens.userId, r.userId), eq(accountTokens.purpose, 'reset_password')))
        await tx.insert(accountTokens).values({
          tokenHash: r.tokenHash,
          userId: r.userId,
          purpose: 'reset_password',
          email: user.email,
          passwordStamp: user.passwordChangedAt,
          createdAt: r.now,
          expiresAt: r.expiresAt
        })
        const email = user.email
        await write(() => { alongside(email) })
        return { outcome: 'issued', email }
      })
      return outcome
    },

    async spend (s, alongside) {
      const done = await transactionAlongside(db, async (tx, write): Promise<ResetDone | null> => {
        // Of two spends of one token, the second waits for the first's commit and deletes nothing.
        const [token] = await tx.delete(accountTokens)
          .where(and(eq(accountTokens.tokenHash, s.tokenHash), eq(accountTokens.purpose, 'reset_password'), gt(accountTokens.expiresAt, s.now)))
          .returning({ userId: accountTokens.userId, passwordStamp: accountTokens.passwordStamp })
        if (token === undefined) return null
        const [changed] = await tx.update(users)
          .set({ passwordHash: s.passwordHash, updatedAt: s.now, passwordChangedAt: s.now, credentialEpoch: sql`${users.credentialEpoch} + 1` })
          .where(and(eq(users.id, token.userId), eq(users.disabled, false), eq(users.passwordChangedAt, token.passwordStamp)))
          .returning({ username: users.username, email: users.email })
        if (changed === undefined) return null
        const endedSessions = (await tx.update(sessions).set({ revokedAt: s.now, revokedReason: 'password_reset' })
          .where(and(eq(sessions.userId, token.userId), isNull(sessions.revokedAt)))).rowCount ?? 0
        const result = { userId: token.userId, username: changed.username, email: changed.email, endedSessions }
        await write(() => { alongside(result) })
        return result
      })
      return done
    }
  }
}
