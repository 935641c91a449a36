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
 * Every write is inside `db.transaction`, whose commit error rejects it, or is one statement
 * outside any transaction (autocommit), whose answer comes only after its commit.
 *
 * The statements of a refresh and of every authenticated request (findToken, rotate, findLive)
 * are named prepared statements built once here: the SQL text is not rebuilt per call, and each
 * pooled connection parses and plans them once.
 */
import { and, desc, eq, gt, isNull, lte, or, sql } from 'drizzle-orm'
import { alias } from 'drizzle-orm/pg-core'
import type { NewSession, RevokeReason, Rotation, RotateOutcome, SessionRow, SessionUser, TokenLookup, TokenRow } from '../sessions.js'
import type { PgDb } from '../../pg/client.js'
import { refreshTokens, sessions, users } from '../../pg/schema.js'
import { transactionAlongside } from './alongside.js'

/**
 * A rotation in one statement (one round trip, atomic as any single statement): the successor's
 * id is drawn first so the parent's UPDATE can name it; the UPDATE spends the parent only
 * `WHERE spent_at IS NULL`, and the INSERT and the session's touch happen only when it did (they
 * read its RETURNING). Two rotations of one token: PostgreSQL makes the second UPDATE wait for
 * the first's commit and re-check the condition on the committed row (READ COMMITTED); it
 * finds the row spent, updates nothing, and so inserts and touches nothing: exactly one
 * successor per token, as the transaction it replaces guaranteed.
 * $1 now, $2 parent id, $3 successor's token hash, $4 session id, $5 successor's expiry.
 */
const ROTATE = `WITH successor AS (
  SELECT nextval(pg_get_serial_sequence('refresh_tokens', 'id')) AS id
), spent AS (
  UPDATE refresh_tokens SET spent_at = $1, successor_id = (SELECT id FROM successor)
  WHERE id = $2 AND spent_at IS NULL
  RETURNING id
), inserted AS (
  INSERT INTO refresh_tokens (id, token_hash, session_id, parent_id, created_at, expires_at)
  SELECT successor.id, $3, $4, spent.id, $1, $5 FROM successor, spent
  RETURNING id
), touched AS (
  UPDATE sessions SET last_used_at = $1, refresh_expires_at = $5
  WHERE id = $4 AND EXISTS (SELECT 1 FROM spent)
)
SELECT id FROM inserted`

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
    revokedReason: sessions.revokedReason,
    amr: sessions.amr,
    authTime: sessions.authTime
  }
  const userColumns = {
    id: users.id,
    username: users.username,
    roles: users.roles,
    disabled: users.disabled,
    createdAt: users.createdAt,
    email: users.email,
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

  const findTokenQuery = db.select({ token: tokenColumns, session: sessionColumns, user: userColumns })
    .from(t).innerJoin(sessions, eq(sessions.id, t.sessionId)).innerJoin(users, eq(users.id, sessions.userId))
    .where(eq(t.id, sql.placeholder('id')))
    .prepare('sessions_find_token')

  const findLiveQuery = db.select({ session: sessionColumns, user: userColumns })
    .from(sessions).innerJoin(users, eq(users.id, sessions.userId))
    .where(and(
      eq(sessions.id, sql.placeholder('sessionId')),
      isNull(sessions.revokedAt),
      gt(sessions.expiresAt, sql.placeholder('now')),
      gt(sessions.refreshExpiresAt, sql.placeholder('now'))
    ))
    .prepare('sessions_find_live')

  return {
    async start (s: NewSession, alongside?: (sessionId: string) => void): Promise<number | null> {
      // A failed insert of the login's audit event is logged and the login written again
      // without it (transactionAlongside), as on SQLite, where the event's write cannot fail the session's.
      return await transactionAlongside(db, async (tx, write) => {
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
          ip: s.ip,
          amr: s.amr,
          authTime: s.now
        })
        const [token] = await tx.insert(refreshTokens).values({ tokenHash: s.tokenHash, sessionId: s.id, createdAt: s.now, expiresAt: s.tokenExpiresAt })
          .returning({ id: refreshTokens.id })
        if (alongside !== undefined) await write(() => { alongside(s.id) })
        return token!.id
      })
    },

    async findToken (id: number): Promise<TokenLookup | null> {
      const [row] = await findTokenQuery.execute({ id })
      return row ?? null
    },

    async tokenRow (id: number): Promise<TokenRow | null> {
      const [row] = await db.select(tokenColumns).from(t).where(eq(t.id, id))
      return row ?? null
    },

    async rotate (r: Rotation): Promise<RotateOutcome> {
      const now = r.now.toISOString()
      const { rows } = await db.$client.query<{ id: string }>({
        name: 'sessions_rotate',
        text: ROTATE,
        values: [now, r.parentId, r.tokenHash, r.sessionId, r.expiresAt.toISOString()]
      })
      const row = rows[0]
      return row === undefined ? { outcome: 'already_spent' } : { outcome: 'rotated', id: Number(row.id) }
    },

    async findLive (sessionId: string, now: Date): Promise<{ session: SessionRow, user: SessionUser } | null> {
      const [row] = await findLiveQuery.execute({ sessionId, now })
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

    async stepUp (sessionId: string, method: string, now: Date): Promise<SessionRow | null> {
      return await db.transaction(async (tx) => {
        const [row] = await tx.select(sessionColumns).from(sessions).where(and(eq(sessions.id, sessionId), live(now))).for('update')
        if (row === undefined) return null
        const amr = row.amr.includes(method) ? row.amr : [...row.amr, method]
        await tx.update(sessions).set({ amr, authTime: now }).where(eq(sessions.id, sessionId))
        return { ...row, amr, authTime: now }
      })
    },

    async revokeAlongside (sessionId: string, reason: RevokeReason, now: Date, alongside: () => void): Promise<boolean> {
      return await transactionAlongside(db, async (tx, write) => {
        const ended = ((await tx.update(sessions).set({ revokedAt: now, revokedReason: reason })
          .where(and(eq(sessions.id, sessionId), isNull(sessions.revokedAt)))).rowCount ?? 0) > 0
        await write(alongside)
        return ended
      })
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
