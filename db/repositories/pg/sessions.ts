/**
 * Sessions and refresh tokens on PostgreSQL: the same rules as db/repositories/sessions.ts,
 * holding across instances by construction, never by a lock in one process:
 * - a rotation is one transaction whose UPDATE spends the parent only `WHERE spent_at IS NULL`;
 *   of two rotations of one token (on any instances) PostgreSQL lets one update the row and
 *   makes the other wait, then re-check the condition on the committed row, find it spent,
 *   and roll back its successor: exactly one successor per token;
 * - a login reads the user's security stamp with FOR SHARE inside its transaction: a change of
 *   the stamp (password change, logout-all, disable) waits for the login's commit and then
 *   ends the new session, or commits first and the login sees the raised stamp and refuses.
 * Every write is inside `db.transaction`, whose commit error rejects it.
 */
import { and, desc, eq, gt, isNull, lte, or, sql } from 'drizzle-orm'
import { alias } from 'drizzle-orm/pg-core'
import type { NewSession, RevokeReason, Rotation, RotateOutcome, SessionRow, SessionUser, TokenLookup, TokenRow } from '../sessions.js'
import type { PgDb } from '../../pg/client.js'
import { refreshTokens, sessions, users } from '../../pg/schema.js'
import { writeAlongside } from './alongside.js'

/** Thrown inside the rotation's transaction to roll it back when the parent was spent meanwhile. */
const ALREADY_SPENT = Symbol('already spent')

export function createPgSessionsRepository (db: PgDb) {
  const t = alias(refreshTokens, 't')
  const sessionColumns = {
    id: sessions.id,
    userId: sessions.userId,
    createdAt: sessions.createdAt,
    lastUsedAt: sessions.lastUsedAt,
    expiresAt: sessions.expiresAt,
    refreshExpiresAt: sessions.refreshExpiresAt,
    userAgent: sessions.userAgent,
    ip: sessions.ip,
    revokedAt: sessions.revokedAt,
    revokedReason: sessions.revokedReason
  }
  const userColumns = {
    id: users.id,
    username: users.username,
    roles: users.roles,
    disabled: users.disabled,
    createdAt: users.createdAt,
    emailVerified: sql<boolean | null>`CASE WHEN ${users.emailKey} IS NULL THEN NULL ELSE ${users.emailVerifiedAt} IS NOT NULL END`
  }
  const tokenColumns = {
    id: t.id,
    tokenHash: t.tokenHash,
    sessionId: t.sessionId,
    successorId: t.successorId,
    createdAt: t.createdAt,
    expiresAt: t.expiresAt,
    spentAt: t.spentAt
  }

  const live = (now: Date) => and(
    isNull(sessions.revokedAt),
    gt(sessions.expiresAt, now),
    gt(sessions.refreshExpiresAt, now)
  )

  const nothing = (): void => {}

  return {
    async start (s: NewSession, alongside?: (sessionId: string) => void): Promise<number | null> {
      let afterCommit = nothing
      const id = await db.transaction(async (tx) => {
        const [credential] = await tx.select({ credentialEpoch: users.credentialEpoch, disabled: users.disabled })
          .from(users).where(eq(users.id, s.userId)).for('share')
        if (credential === undefined || credential.credentialEpoch !== s.credentialEpoch || credential.disabled) return null
        await tx.insert(sessions).values({
          id: s.id,
          userId: s.userId,
          createdAt: s.now,
          lastUsedAt: s.now,
          expiresAt: s.expiresAt,
          refreshExpiresAt: s.tokenExpiresAt,
          userAgent: s.userAgent,
          ip: s.ip
        })
        const [token] = await tx.insert(refreshTokens).values({ tokenHash: s.tokenHash, sessionId: s.id, createdAt: s.now, expiresAt: s.tokenExpiresAt })
          .returning({ id: refreshTokens.id })
        if (alongside !== undefined) afterCommit = await writeAlongside(tx, () => { alongside(s.id) })
        return token!.id
      })
      afterCommit()
      return id
    },

    async findToken (id: number): Promise<TokenLookup | null> {
      const [row] = await db.select({ token: tokenColumns, session: sessionColumns, user: userColumns })
        .from(t).innerJoin(sessions, eq(sessions.id, t.sessionId)).innerJoin(users, eq(users.id, sessions.userId))
        .where(eq(t.id, id))
      return row ?? null
    },

    async tokenRow (id: number): Promise<TokenRow | null> {
      const [row] = await db.select(tokenColumns).from(t).where(eq(t.id, id))
      return row ?? null
    },

    async rotate (r: Rotation): Promise<RotateOutcome> {
      try {
        const id = await db.transaction(async (tx) => {
          const [successor] = await tx.insert(refreshTokens)
            .values({ tokenHash: r.tokenHash, sessionId: r.sessionId, parentId: r.parentId, createdAt: r.now, expiresAt: r.expiresAt })
            .returning({ id: refreshTokens.id })
          const spent = await tx.update(refreshTokens).set({ spentAt: r.now, successorId: successor!.id })
            .where(and(eq(refreshTokens.id, r.parentId), isNull(refreshTokens.spentAt)))
          if ((spent.rowCount ?? 0) === 0) throw ALREADY_SPENT
          await tx.update(sessions).set({ lastUsedAt: r.now, refreshExpiresAt: r.expiresAt }).where(eq(sessions.id, r.sessionId))
          return successor!.id
        })
        return { outcome: 'rotated', id }
      } catch (err) {
        if (err === ALREADY_SPENT) return { outcome: 'already_spent' }
        throw err
      }
    },

    async findLive (sessionId: string, now: Date): Promise<{ session: SessionRow, user: SessionUser } | null> {
      const [row] = await db.select({ session: sessionColumns, user: userColumns })
        .from(sessions).innerJoin(users, eq(users.id, sessions.userId))
        .where(and(eq(sessions.id, sessionId), live(now)))
      return row ?? null
    },

    async listLive (userId: string, now: Date): Promise<SessionRow[]> {
      return await db.select().from(sessions)
        .where(and(eq(sessions.userId, userId), live(now)))
        .orderBy(desc(sessions.lastUsedAt))
    },

    async revoke (sessionId: string, reason: RevokeReason, now: Date, userId?: string): Promise<boolean> {
      const where = userId === undefined
        ? and(eq(sessions.id, sessionId), isNull(sessions.revokedAt))
        : and(eq(sessions.id, sessionId), eq(sessions.userId, userId), live(now))
      return ((await db.update(sessions).set({ revokedAt: now, revokedReason: reason }).where(where)).rowCount ?? 0) > 0
    },

    async revokeAlongside (sessionId: string, reason: RevokeReason, now: Date, alongside: () => void): Promise<boolean> {
      let afterCommit = nothing
      const ended = await db.transaction(async (tx) => {
        const ended = ((await tx.update(sessions).set({ revokedAt: now, revokedReason: reason })
          .where(and(eq(sessions.id, sessionId), isNull(sessions.revokedAt)))).rowCount ?? 0) > 0
        afterCommit = await writeAlongside(tx, alongside)
        return ended
      })
      afterCommit()
      return ended
    },

    async revokeAllForUser (userId: string, reason: RevokeReason, now: Date): Promise<number> {
      return await db.transaction(async (tx) => {
        await tx.update(users).set({ credentialEpoch: sql`${users.credentialEpoch} + 1` }).where(eq(users.id, userId))
        return (await tx.update(sessions).set({ revokedAt: now, revokedReason: reason })
          .where(and(eq(sessions.userId, userId), isNull(sessions.revokedAt)))).rowCount ?? 0
      })
    },

    /** As on SQLite: tokens by walking ids from the oldest, then ended sessions, in batches. */
    async pruneExpired (now: Date, endedBefore: Date, batchSize = 1000, issuedBefore: Date = now): Promise<{ tokens: number, sessions: number }> {
      let tokens = 0
      let ended = 0
      let after = 0
      for (;;) {
        const batch = await db.select({ id: refreshTokens.id, createdAt: refreshTokens.createdAt }).from(refreshTokens)
          .where(gt(refreshTokens.id, after)).orderBy(refreshTokens.id).limit(batchSize)
        if (batch.length === 0) break
        const last = batch[batch.length - 1]!
        tokens += (await db.delete(refreshTokens).where(and(gt(refreshTokens.id, after), lte(refreshTokens.id, last.id), lte(refreshTokens.expiresAt, now)))).rowCount ?? 0
        after = last.id
        if (batch.length < batchSize || last.createdAt.getTime() > issuedBefore.getTime()) break
      }
      for (;;) {
        const n = (await db.delete(sessions).where(sql`${sessions.id} IN (SELECT id FROM ${sessions} WHERE ${or(
          lte(sessions.revokedAt, endedBefore),
          lte(sessions.expiresAt, endedBefore),
          lte(sessions.refreshExpiresAt, endedBefore)
        )} LIMIT ${batchSize})`)).rowCount ?? 0
        ended += n
        if (n < batchSize) break
      }
      return { tokens, sessions: ended }
    },

    async countLive (now: Date): Promise<number> {
      return (await db.select({ n: sql<number>`count(*)::int` }).from(sessions).where(live(now)))[0]?.n ?? 0
    }
  }
}
