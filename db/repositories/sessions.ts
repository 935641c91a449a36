/**
 * Sessions and their refresh tokens. Every write that must be all-or-nothing (a login's
 * session + first token, a rotation) is one synchronous better-sqlite3 transaction: no await
 * inside, so nothing else can interleave and a crash leaves either the old or the new state.
 * Hashing, HMAC and JWT signing happen in the caller, outside the transaction.
 *
 * The methods are async so that a PostgreSQL implementation can stand behind the same shape.
 */
import { and, desc, eq, gt, isNull, lte, ne, or, sql } from 'drizzle-orm'
import type { Db } from '../client.js'
import { refreshTokens, sessions, users } from '../schema.js'

export interface SessionRow {
  id: string
  userId: string
  createdAt: Date
  lastUsedAt: Date
  expiresAt: Date
  refreshExpiresAt: Date
  userAgent: string | null
  ip: string | null
  revokedAt: Date | null
  revokedReason: string | null
}

export interface TokenRow {
  id: number
  /** SHA-256 of the token's secret. */
  tokenHash: Buffer
  sessionId: string
  successorId: number | null
  createdAt: Date
  expiresAt: Date
  spentAt: Date | null
}

export interface SessionUser {
  id: string
  username: string
  roles: string[]
  disabled: boolean
  createdAt: Date
}

export interface TokenLookup {
  token: TokenRow
  session: SessionRow
  user: SessionUser
}

export interface NewSession {
  id: string
  userId: string
  userAgent: string | null
  ip: string | null
  now: Date
  expiresAt: Date
  tokenHash: Buffer
  tokenExpiresAt: Date
}

export interface Rotation {
  parentId: number
  sessionId: string
  tokenHash: Buffer
  expiresAt: Date
  now: Date
}

export type RotateOutcome = { outcome: 'rotated', id: number } | { outcome: 'already_spent' }

export type RevokeReason = 'logout' | 'logout_all' | 'password_change' | 'deleted' | 'reuse' | 'disabled' | 'expired' | 'admin'

/**
 * A bound parameter the query planner cannot see. better-sqlite3 clears a statement's bindings
 * after every run, and SQLite re-prepares (parses and plans again) a statement whose plan might
 * depend on a bound value once its bindings are cleared; in a join, SQLite marks every
 * `column = ?` it weighs as such. So the two lookups below (joins) were re-prepared on every
 * run (callgrind: 1,999 re-prepares in 2,000 runs). Inside CAST the value is out of the
 * planner's sight, the plan stays the same (the unique index), and the lookup costs 6.9 µs
 * instead of 17.5 µs (token) and 4.5 µs instead of 10 µs (session). Single-table statements
 * take SQLite's shortcut planner and are not affected.
 */
const opaque = (name: string, type: 'text' | 'blob' | 'integer') => sql`cast(${sql.placeholder(name)} as ${sql.raw(type)})`

export function createSessionsRepository (db: Db) {
  const tokenColumns = {
    id: refreshTokens.id,
    tokenHash: refreshTokens.tokenHash,
    sessionId: refreshTokens.sessionId,
    successorId: refreshTokens.successorId,
    createdAt: refreshTokens.createdAt,
    expiresAt: refreshTokens.expiresAt,
    spentAt: refreshTokens.spentAt
  }
  const withSessionAndUser = {
    token: tokenColumns,
    session: sessions,
    user: { id: users.id, username: users.username, roles: users.roles, disabled: users.disabled, createdAt: users.createdAt }
  }
  const lookupById = db.select(withSessionAndUser)
    .from(refreshTokens)
    .innerJoin(sessions, eq(sessions.id, refreshTokens.sessionId))
    .innerJoin(users, eq(users.id, sessions.userId))
    .where(eq(refreshTokens.id, opaque('id', 'integer')))
    .prepare()
  // Tokens issued before selectors, through the partial index that only their rows are in.
  const lookupLegacy = db.select(withSessionAndUser)
    .from(refreshTokens)
    .innerJoin(sessions, eq(sessions.id, refreshTokens.sessionId))
    .innerJoin(users, eq(users.id, sessions.userId))
    .where(and(eq(refreshTokens.tokenHash, opaque('hash', 'blob')), sql`${refreshTokens.legacy} = 1`))
    .prepare()
  const tokenById = db.select(tokenColumns).from(refreshTokens).where(eq(refreshTokens.id, sql.placeholder('id'))).prepare()

  // The lookup every Bearer request makes (authenticate), so it skips Drizzle: its prepared
  // select maps every column of both tables through the schema's codecs and took as long as
  // the statement itself (npm run bench:drizzle: 11.4 µs, against 6.6 µs as here). The same SQL
  // as Drizzle generated, with the columns mapped here as the schema says (timestamp_ms to
  // Date, the JSON roles, the boolean). CAST: see `opaque`.
  const liveSession = db.$client.prepare(`SELECT s.id, s.user_id, s.created_at, s.last_used_at, s.expires_at,
      s.refresh_expires_at, s.user_agent, s.ip, s.revoked_at, s.revoked_reason,
      u.id, u.username, u.roles, u.disabled, u.created_at
    FROM sessions s INNER JOIN users u ON u.id = s.user_id
    WHERE s.id = CAST(? AS TEXT) AND s.revoked_at IS NULL AND s.expires_at > ? AND s.refresh_expires_at > ?`).raw()
  const date = (ms: unknown): Date | null => ms === null ? null : new Date(ms as number)

  const spend = db.update(refreshTokens)
    .set({ spentAt: sql`${sql.placeholder('now')}` })
    .where(and(eq(refreshTokens.id, sql.placeholder('id')), isNull(refreshTokens.spentAt)))
    .prepare()
  const insertToken = db.insert(refreshTokens).values({
    tokenHash: sql.placeholder('hash'),
    sessionId: sql.placeholder('sessionId'),
    parentId: sql.placeholder('parentId'),
    createdAt: sql.placeholder('now'),
    expiresAt: sql.placeholder('expiresAt')
  }).returning({ id: refreshTokens.id }).prepare()
  const insertSession = db.insert(sessions).values({
    id: sql.placeholder('id'),
    userId: sql.placeholder('userId'),
    createdAt: sql.placeholder('now'),
    lastUsedAt: sql.placeholder('now'),
    expiresAt: sql.placeholder('expiresAt'),
    refreshExpiresAt: sql.placeholder('tokenExpiresAt'),
    userAgent: sql.placeholder('userAgent'),
    ip: sql.placeholder('ip')
  }).prepare()
  const insertFirstToken = db.insert(refreshTokens).values({
    tokenHash: sql.placeholder('hash'),
    sessionId: sql.placeholder('sessionId'),
    createdAt: sql.placeholder('now'),
    expiresAt: sql.placeholder('expiresAt')
  }).returning({ id: refreshTokens.id }).prepare()
  // The two write transactions are better-sqlite3's own, made once, around Drizzle's prepared
  // statements (which run on the same connection, so inside the transaction). Drizzle's
  // db.transaction() builds a transaction object per call, with a query builder for every
  // table of the schema: about a third of a rotation's database time (npm run bench:drizzle).
  const startTx = db.$client.transaction((s: NewSession, alongside?: (sessionId: string) => void): number => {
    insertSession.run({ id: s.id, userId: s.userId, now: s.now, expiresAt: s.expiresAt, tokenExpiresAt: s.tokenExpiresAt, userAgent: s.userAgent, ip: s.ip })
    const token = insertFirstToken.get({ hash: s.tokenHash, sessionId: s.id, now: s.now, expiresAt: s.tokenExpiresAt })
    alongside?.(s.id)
    return token!.id
  }).immediate
  const linkSuccessor = db.update(refreshTokens)
    .set({ successorId: sql`${sql.placeholder('successorId')}` })
    .where(eq(refreshTokens.id, sql.placeholder('id')))
    .prepare()
  const touchSession = db.update(sessions)
    .set({ lastUsedAt: sql`${sql.placeholder('now')}`, refreshExpiresAt: sql`${sql.placeholder('expiresAt')}` })
    .where(eq(sessions.id, sql.placeholder('sessionId')))
    .prepare()

  // Placeholders compared with or inserted into timestamp columns take Dates (Drizzle maps
  // them); those inside raw sql`` take epoch milliseconds.
  const rotateTx = db.$client.transaction((r: Rotation): RotateOutcome => {
    const now = r.now.getTime()
    // Conditional on spent_at IS NULL: of two racing rotations only one may win.
    if (spend.run({ id: r.parentId, now }).changes === 0) return { outcome: 'already_spent' }
    const inserted = insertToken.get({ hash: r.tokenHash, sessionId: r.sessionId, parentId: r.parentId, now: r.now, expiresAt: r.expiresAt })
    linkSuccessor.run({ id: r.parentId, successorId: inserted!.id })
    touchSession.run({ sessionId: r.sessionId, now, expiresAt: r.expiresAt.getTime() })
    return { outcome: 'rotated', id: inserted!.id }
  }).immediate

  const live = (now: Date) => and(
    isNull(sessions.revokedAt),
    gt(sessions.expiresAt, now),
    gt(sessions.refreshExpiresAt, now)
  )

  return {
    /** A login: the session and its first refresh token, together or not at all. */
    /**
     * Inserts the session and its first token in one transaction and answers the token's id.
     * `alongside` runs inside it (synchronous writes only, such as the login's audit event),
     * so both land in one commit.
     */
    async start (s: NewSession, alongside?: (sessionId: string) => void): Promise<number> {
      return startTx(s, alongside)
    },

    /** The token with this id, with its session and user (the caller checks the secret). */
    async findToken (id: number): Promise<TokenLookup | null> {
      return lookupById.get({ id }) ?? null
    },

    /** A token issued before selectors, by the digest of its secret. */
    async findLegacyToken (hash: Buffer): Promise<TokenLookup | null> {
      return lookupLegacy.get({ hash }) ?? null
    },

    /** The token row alone (following a chain of successors). */
    async tokenRow (id: number): Promise<TokenRow | null> {
      return tokenById.get({ id }) ?? null
    },

    /**
     * Spends the parent token and stores its successor, in one transaction, and answers the
     * successor's id; 'already_spent' (changing nothing) when another request spent the parent first.
     */
    async rotate (r: Rotation): Promise<RotateOutcome> {
      return rotateTx(r)
    },

    /** The session when it is live (not revoked, not past either expiry), with its user. */
    async findLive (sessionId: string, now: Date): Promise<{ session: SessionRow, user: SessionUser } | null> {
      const t = now.getTime()
      const r = liveSession.get(sessionId, t, t) as unknown[] | undefined
      if (r === undefined) return null
      return {
        session: {
          id: r[0] as string,
          userId: r[1] as string,
          createdAt: new Date(r[2] as number),
          lastUsedAt: new Date(r[3] as number),
          expiresAt: new Date(r[4] as number),
          refreshExpiresAt: new Date(r[5] as number),
          userAgent: r[6] as string | null,
          ip: r[7] as string | null,
          revokedAt: date(r[8]),
          revokedReason: r[9] as string | null
        },
        user: { id: r[10] as string, username: r[11] as string, roles: JSON.parse(r[12] as string) as string[], disabled: r[13] === 1, createdAt: new Date(r[14] as number) }
      }
    },

    async listLive (userId: string, now: Date): Promise<SessionRow[]> {
      return db.select().from(sessions)
        .where(and(eq(sessions.userId, userId), live(now)))
        .orderBy(desc(sessions.lastUsedAt))
        .all()
    },

    /** Ends one session; true when it was not already ended. */
    async revoke (sessionId: string, reason: RevokeReason, now: Date, userId?: string): Promise<boolean> {
      const where = userId === undefined
        ? and(eq(sessions.id, sessionId), isNull(sessions.revokedAt))
        : and(eq(sessions.id, sessionId), eq(sessions.userId, userId), live(now))
      return db.update(sessions).set({ revokedAt: now, revokedReason: reason }).where(where).run().changes > 0
    },

    /** Ends every session of a user, optionally but one; returns how many were ended. */
    async revokeAllForUser (userId: string, reason: RevokeReason, now: Date, exceptSessionId?: string): Promise<number> {
      const where = exceptSessionId === undefined
        ? and(eq(sessions.userId, userId), isNull(sessions.revokedAt))
        : and(eq(sessions.userId, userId), isNull(sessions.revokedAt), ne(sessions.id, exceptSessionId))
      return db.update(sessions).set({ revokedAt: now, revokedReason: reason }).where(where).run().changes
    },

    /**
     * Deletes, in batches, refresh tokens past their expiry and sessions that ended before
     * `endedBefore`. A session's tokens expire no later than it does, and one that is revoked
     * leaves its tokens to expire on their own (no index leads from a session to its tokens:
     * db/schema.ts). Short transactions keep the write lock free for requests in between.
     */
    async pruneExpired (now: Date, endedBefore: Date, batchSize = 1000): Promise<{ tokens: number, sessions: number }> {
      let tokens = 0
      let ended = 0
      for (;;) {
        const n = db.delete(refreshTokens).where(sql`${refreshTokens.id} IN (SELECT id FROM ${refreshTokens} WHERE ${lte(refreshTokens.expiresAt, now)} LIMIT ${batchSize})`).run().changes
        tokens += n
        if (n < batchSize) break
        await new Promise((resolve) => setImmediate(resolve))
      }
      for (;;) {
        const n = db.delete(sessions).where(sql`${sessions.id} IN (SELECT id FROM ${sessions} WHERE ${or(
          lte(sessions.revokedAt, endedBefore),
          lte(sessions.expiresAt, endedBefore),
          lte(sessions.refreshExpiresAt, endedBefore)
        )} LIMIT ${batchSize})`).run().changes
        ended += n
        if (n < batchSize) break
        await new Promise((resolve) => setImmediate(resolve))
      }
      return { tokens, sessions: ended }
    },

    async countLive (now: Date): Promise<number> {
      return db.select({ n: sql<number>`count(*)` }).from(sessions).where(live(now)).get()?.n ?? 0
    }
  }
}

export type SessionsRepository = ReturnType<typeof createSessionsRepository>
