/**
 * Sessions and their refresh tokens. Every write that must be all-or-nothing (a login's
 * session + first token, a rotation) is one synchronous better-sqlite3 transaction: no await
 * inside, so nothing else can interleave and a crash leaves either the old or the new state.
 * Hashing, HMAC and JWT signing happen in the caller, outside the transaction.
 *
 * The methods are async so that a PostgreSQL implementation can stand behind the same shape.
 */
import { and, desc, eq, gt, isNull, lte, or, sql } from 'drizzle-orm'
import type { Db } from '../client.js'
import { refreshTokens, sessions } from '../schema.js'

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
  /** How the user authenticated (the `amr` claim). */
  amr: string[]
  /** When the user last proved a credential (the `auth_time` claim); null on sessions from before it (use `createdAt`). */
  authTime: Date | null
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
  /** The account's address, or null (GET /me shows it without a second query). */
  email: string | null
  /** Whether the account's address is verified; null when it has none (no `email_verified` claim). */
  emailVerified: boolean | null
}

export interface TokenLookup {
  token: TokenRow
  session: SessionRow
  user: SessionUser
}

export interface NewSession {
  id: string
  userId: string
  /** The user's security stamp as read with the hash the password was checked against. */
  credentialEpoch: number
  userAgent: string | null
  ip: string | null
  /** The methods the login proved (`["pwd"]`, `["pwd","otp"]`, ...). */
  amr: string[]
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

/** Why a session ended (revoked_reason). The upgrade that retired tokens from before selectors also wrote 'legacy_refresh_token'. */
export type RevokeReason = 'logout' | 'logout_all' | 'password_change' | 'password_reset' | 'password_guessing' | 'deleted' | 'reuse' | 'disabled' | 'expired' | 'admin' | 'email_change_undone'

/*
 * CAST around the bound values of the joins below: better-sqlite3 clears a statement's bindings
 * after every run, and SQLite re-prepares (parses and plans again) a statement whose plan might
 * depend on a bound value once its bindings are cleared; in a join, SQLite marks every
 * `column = ?` it weighs as such, so a joined lookup would be re-prepared on every run. Inside
 * CAST the value is out of the planner's sight and the plan stays the same (the key or index
 * the column has), prepared once (docs/decisions/0006-cast-bound-values.md). Single-table
 * statements take SQLite's shortcut planner and are not affected.
 */

/** A row of the joined session-and-user lookups, as SQLite answers it (aliases in SESSION_AND_USER). */
interface SessionAndUserColumns {
  sessionId: string
  sessionUserId: string
  sessionCreatedAt: number
  lastUsedAt: number
  sessionExpiresAt: number
  refreshExpiresAt: number
  userAgent: string | null
  ip: string | null
  revokedAt: number | null
  revokedReason: string | null
  /** JSON array. */
  amr: string
  authTime: number | null
  userId: string
  username: string
  /** JSON array. */
  roles: string
  disabled: number
  userCreatedAt: number
  email: string | null
  emailVerified: 0 | 1 | null
}

/** A row of the token lookups: the session and user columns and the token's (aliases in TOKEN_WITH_SESSION). */
interface TokenWithSessionColumns extends SessionAndUserColumns {
  tokenId: number
  tokenHash: Buffer
  tokenSessionId: string
  successorId: number | null
  tokenCreatedAt: number
  tokenExpiresAt: number
  spentAt: number | null
}

/** Thrown inside the rotation's transaction to roll it back when the parent was spent meanwhile. */
const ALREADY_SPENT = Symbol('already spent')

export function createSessionsRepository (db: Db) {
  const tokenById = db.select({
    id: refreshTokens.id,
    tokenHash: refreshTokens.tokenHash,
    sessionId: refreshTokens.sessionId,
    successorId: refreshTokens.successorId,
    createdAt: refreshTokens.createdAt,
    expiresAt: refreshTokens.expiresAt,
    spentAt: refreshTokens.spentAt
  }).from(refreshTokens).where(eq(refreshTokens.id, sql.placeholder('id'))).prepare()

  // The lookups every Bearer request (authenticate) and every refresh make skip Drizzle: its
  // prepared select maps every column of the joined tables through the schema's codecs, which
  // costs as much as the statement itself (docs/decisions/0007-raw-statements-on-hot-paths.md;
  // `npm run bench:drizzle` compares the two). The same SQL as Drizzle generated, each column
  // named by its alias, and mapped in `sessionAndUser` and `tokenAt` as the schema says
  // (timestamp_ms to Date, the JSON roles, the boolean). CAST: see above.
  const SESSION_AND_USER = `s.id AS sessionId, s.user_id AS sessionUserId, s.created_at AS sessionCreatedAt,
      s.last_used_at AS lastUsedAt, s.expires_at AS sessionExpiresAt, s.refresh_expires_at AS refreshExpiresAt,
      s.user_agent AS userAgent, s.ip AS ip, s.revoked_at AS revokedAt, s.revoked_reason AS revokedReason,
      s.amr AS amr, s.auth_time AS authTime, u.id AS userId, u.username AS username, u.roles AS roles, u.disabled AS disabled, u.created_at AS userCreatedAt,
      u.email AS email, CASE WHEN u.email_key IS NULL THEN NULL ELSE u.email_verified_at IS NOT NULL END AS emailVerified`
  const liveSession = db.$client.prepare<[string, number, number], SessionAndUserColumns>(`SELECT ${SESSION_AND_USER}
    FROM sessions s INNER JOIN users u ON u.id = s.user_id
    WHERE s.id = CAST(? AS TEXT) AND s.revoked_at IS NULL AND s.expires_at > ? AND s.refresh_expires_at > ?`)
  const TOKEN_WITH_SESSION = `SELECT ${SESSION_AND_USER},
      t.id AS tokenId, t.token_hash AS tokenHash, t.session_id AS tokenSessionId, t.successor_id AS successorId,
      t.created_at AS tokenCreatedAt, t.expires_at AS tokenExpiresAt, t.spent_at AS spentAt
    FROM refresh_tokens t INNER JOIN sessions s ON s.id = t.session_id INNER JOIN users u ON u.id = s.user_id`
  const lookupById = db.$client.prepare<[number], TokenWithSessionColumns>(`${TOKEN_WITH_SESSION} WHERE t.id = CAST(? AS INTEGER)`)
  const date = (ms: number | null): Date | null => ms === null ? null : new Date(ms)
  const sessionAndUser = (r: SessionAndUserColumns): { session: SessionRow, user: SessionUser } => ({
    session: {
      id: r.sessionId,
      userId: r.sessionUserId,
      createdAt: new Date(r.sessionCreatedAt),
      lastUsedAt: new Date(r.lastUsedAt),
      expiresAt: new Date(r.sessionExpiresAt),
      refreshExpiresAt: new Date(r.refreshExpiresAt),
      userAgent: r.userAgent,
      ip: r.ip,
      revokedAt: date(r.revokedAt),
      revokedReason: r.revokedReason,
      amr: JSON.parse(r.amr) as string[],
      authTime: date(r.authTime)
    },
    user: { id: r.userId, username: r.username, roles: JSON.parse(r.roles) as string[], disabled: r.disabled === 1, createdAt: new Date(r.userCreatedAt), email: r.email, emailVerified: r.emailVerified === null ? null : r.emailVerified === 1 }
  })
  const tokenAt = (r: TokenWithSessionColumns | undefined): TokenLookup | null => r === undefined
    ? null
    : {
        ...sessionAndUser(r),
        token: {
          id: r.tokenId,
          tokenHash: r.tokenHash,
          sessionId: r.tokenSessionId,
          successorId: r.successorId,
          createdAt: new Date(r.tokenCreatedAt),
          expiresAt: new Date(r.tokenExpiresAt),
          spentAt: date(r.spentAt)
        }
      }

  const insertSession = db.insert(sessions).values({
    id: sql.placeholder('id'),
    userId: sql.placeholder('userId'),
    createdAt: sql.placeholder('now'),
    lastUsedAt: sql.placeholder('now'),
    expiresAt: sql.placeholder('expiresAt'),
    refreshExpiresAt: sql.placeholder('tokenExpiresAt'),
    userAgent: sql.placeholder('userAgent'),
    ip: sql.placeholder('ip'),
    amr: sql.placeholder('amr'),
    authTime: sql.placeholder('now')
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
  // table of the schema, a large share of a rotation's database time (decision 0007).
  const credentialOf = db.$client.prepare('SELECT credential_epoch, disabled FROM users WHERE id = ?')
  const startTx = db.$client.transaction((s: NewSession, alongside?: (sessionId: string) => void): number | null => {
    // Inside the IMMEDIATE transaction, so nothing can raise the stamp between this read and
    // the commit: a password change, logout-all or disable that committed after the password
    // was checked refuses the session here, and one that comes later ends it.
    const credential = credentialOf.get(s.userId) as { credential_epoch: number, disabled: number } | undefined
    if (credential === undefined || credential.credential_epoch !== s.credentialEpoch || credential.disabled !== 0) return null
    insertSession.run({ id: s.id, userId: s.userId, now: s.now, expiresAt: s.expiresAt, tokenExpiresAt: s.tokenExpiresAt, userAgent: s.userAgent, ip: s.ip, amr: s.amr })
    const token = insertFirstToken.get({ hash: s.tokenHash, sessionId: s.id, now: s.now, expiresAt: s.tokenExpiresAt })
    alongside?.(s.id)
    return token!.id
  }).immediate
  // The rotation, on every refresh: three raw statements, for the same reason as the lookups
  // (npm run bench:drizzle). The successor goes in first, so that spending the parent and
  // linking it to its successor are one UPDATE.
  const insertSuccessor = db.$client.prepare(`INSERT INTO refresh_tokens (token_hash, session_id, parent_id, created_at, expires_at)
    VALUES (?, ?, ?, ?, ?) RETURNING id`).pluck()
  const spendParent = db.$client.prepare('UPDATE refresh_tokens SET spent_at = ?, successor_id = ? WHERE id = ? AND spent_at IS NULL')
  const touchSession = db.$client.prepare('UPDATE sessions SET last_used_at = ?, refresh_expires_at = ? WHERE id = ?')
  const rotateTx = db.$client.transaction((r: Rotation): number => {
    const now = r.now.getTime()
    const expiresAt = r.expiresAt.getTime()
    const id = insertSuccessor.get(r.tokenHash, r.sessionId, r.parentId, now, expiresAt) as number
    // Conditional on spent_at IS NULL: of two racing rotations only one may win. The loser's
    // successor row goes with its transaction, rolled back by the throw.
    if (spendParent.run(now, id, r.parentId).changes === 0) throw ALREADY_SPENT
    touchSession.run(now, expiresAt, r.sessionId)
    return id
  }).immediate

  const raiseStamp = db.$client.prepare('UPDATE users SET credential_epoch = credential_epoch + 1 WHERE id = ?')
  const revokeAllOf = db.$client.prepare('UPDATE sessions SET revoked_at = ?, revoked_reason = ? WHERE user_id = ? AND revoked_at IS NULL')
  const revokeAllTx = db.$client.transaction((userId: string, reason: RevokeReason, now: number): number => {
    raiseStamp.run(userId)
    return revokeAllOf.run(now, reason, userId).changes
  }).immediate

  const tokenWalk = db.$client.prepare('SELECT id, created_at FROM refresh_tokens WHERE id > ? ORDER BY id LIMIT ?')
  const deleteExpiredTokens = db.$client.prepare('DELETE FROM refresh_tokens WHERE id > ? AND id <= ? AND expires_at <= ?')

  const live = (now: Date) => and(
    isNull(sessions.revokedAt),
    gt(sessions.expiresAt, now),
    gt(sessions.refreshExpiresAt, now)
  )

  const revokeAlongsideTx = db.$client.transaction((sessionId: string, reason: RevokeReason, now: Date, alongside: () => void): boolean => {
    const ended = db.update(sessions).set({ revokedAt: now, revokedReason: reason }).where(and(eq(sessions.id, sessionId), isNull(sessions.revokedAt))).run().changes > 0
    alongside()
    return ended
  }).immediate

  return {
    /**
     * A login: inserts the session and its first refresh token in one transaction (together or
     * not at all) and answers the token's id; null, inserting nothing, when the user's security
     * stamp is no longer `credentialEpoch` or the account is disabled. `alongside` runs inside
     * it (synchronous writes only, such as the login's audit event), so both land in one commit.
     */
    async start (s: NewSession, alongside?: (sessionId: string) => void): Promise<number | null> {
      return startTx(s, alongside)
    },

    /** The token with this id, with its session and user (the caller checks the secret). */
    async findToken (id: number): Promise<TokenLookup | null> {
      return tokenAt(lookupById.get(id))
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
      try {
        return { outcome: 'rotated', id: rotateTx(r) }
      } catch (err) {
        if (err === ALREADY_SPENT) return { outcome: 'already_spent' }
        throw err
      }
    },

    /** The session when it is live (not revoked, not past either expiry), with its user. */
    async findLive (sessionId: string, now: Date): Promise<{ session: SessionRow, user: SessionUser } | null> {
      const t = now.getTime()
      const r = liveSession.get(sessionId, t, t)
      return r === undefined ? null : sessionAndUser(r)
    },

    async listLive (userId: string, now: Date): Promise<SessionRow[]> {
      return db.select().from(sessions)
        .where(and(eq(sessions.userId, userId), live(now)))
        .orderBy(desc(sessions.lastUsedAt))
        .all()
    },

    /**
     * A step-up (POST /api/auth/reauthenticate): the live session's `auth_time` becomes `now` and
     * `method` joins its `amr`. The updated session, or null when it is not live.
     */
    async stepUp (sessionId: string, method: string, now: Date): Promise<SessionRow | null> {
      return db.transaction((tx) => {
        const row = tx.select().from(sessions).where(and(eq(sessions.id, sessionId), live(now))).get()
        if (row === undefined) return null
        const amr = row.amr.includes(method) ? row.amr : [...row.amr, method]
        tx.update(sessions).set({ amr, authTime: now }).where(eq(sessions.id, sessionId)).run()
        return { ...row, amr, authTime: now }
      }, { behavior: 'immediate' })
    },

    /** Ends one session; true when it was not already ended. */
    async revoke (sessionId: string, reason: RevokeReason, now: Date, userId?: string): Promise<boolean> {
      const where = userId === undefined
        ? and(eq(sessions.id, sessionId), isNull(sessions.revokedAt))
        : and(eq(sessions.id, sessionId), eq(sessions.userId, userId), live(now))
      return db.update(sessions).set({ revokedAt: now, revokedReason: reason }).where(where).run().changes > 0
    },

    /**
     * Ends one session, as `revoke`, with `alongside` inside the same transaction (synchronous
     * writes only, such as the audit event of a detected reuse), so both land in one commit.
     */
    async revokeAlongside (sessionId: string, reason: RevokeReason, now: Date, alongside: () => void): Promise<boolean> {
      return revokeAlongsideTx(sessionId, reason, now, alongside)
    },

    /**
     * Ends every session of a user and raises the user's security stamp, in one transaction, so
     * that a login whose password check passed before this commits starts no session after it.
     * Returns how many sessions were ended. (A password change ends all but one in its own
     * transaction: users repository, `changePassword`.)
     */
    async revokeAllForUser (userId: string, reason: RevokeReason, now: Date): Promise<number> {
      return revokeAllTx(userId, reason, now.getTime())
    },

    /**
     * Deletes, in batches, refresh tokens past their expiry and sessions that ended before
     * `endedBefore`. Short transactions keep the write lock free for requests in between.
     *
     * Tokens have no index on their expiry (db/schema.ts): they are found by walking ids from
     * the oldest, which are the first to expire, in batches, deleting those of each batch past
     * `now`, and stopping at the first batch that reaches a token issued after `issuedBefore`
     * (now minus REFRESH_TOKEN_TTL: every token issued earlier is expired, unless an earlier,
     * longer TTL issued it). A pass so reads about as many rows as it deletes. A token that
     * expired early (its session's absolute end came first) waits until the walk reaches it;
     * until then it is refused like any expired token. A session's tokens are not deleted with
     * it (no index leads from a session to its tokens): they expire on their own, and a token
     * whose session is gone is refused as unknown.
     */
    async pruneExpired (now: Date, endedBefore: Date, batchSize = 1000, issuedBefore: Date = now): Promise<{ tokens: number, sessions: number }> {
      let tokens = 0
      let ended = 0
      let after = 0
      for (;;) {
        const batch = tokenWalk.all(after, batchSize) as Array<{ id: number, created_at: number }>
        if (batch.length === 0) break
        const last = batch[batch.length - 1]!
        tokens += deleteExpiredTokens.run(after, last.id, now.getTime()).changes
        after = last.id
        if (batch.length < batchSize || last.created_at > issuedBefore.getTime()) break
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
