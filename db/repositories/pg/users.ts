/**
 * Users on PostgreSQL: the same rules as db/repositories/users.ts, each conditional write one
 * statement or one transaction whose row counts decide, so they hold across instances.
 */
import { and, asc, eq, isNotNull, isNull, ne, or, sql } from 'drizzle-orm'
import { usernameFold, usernameKey, usernameSkeleton } from '../../username-keys.js'
import { EmailTakenError, type NewUser, type User } from '../users.js'
import type { PgDb } from '../../pg/client.js'
import { accountTokens, sessions, users } from '../../pg/schema.js'
import { transactionAlongside } from './alongside.js'

function isUniqueViolation (err: unknown): boolean {
  for (let e = err; typeof e === 'object' && e !== null; e = (e as { cause?: unknown }).cause) {
    if ((e as { code?: unknown }).code === '23505') return true
  }
  return false
}

const toUser = (row: typeof users.$inferSelect): User => ({
  id: row.id,
  username: row.username,
  roles: row.roles,
  disabled: row.disabled,
  createdAt: row.createdAt,
  passwordHash: row.passwordHash,
  credentialEpoch: row.credentialEpoch,
  passwordChangedAt: row.passwordChangedAt,
  email: row.email,
  emailVerified: row.emailVerifiedAt !== null
})

/** The unique index on the address's key: a concurrent registration of the same address. */
function isEmailKeyViolation (err: unknown): boolean {
  for (let e = err; typeof e === 'object' && e !== null; e = (e as { cause?: unknown }).cause) {
    if ((e as { code?: unknown }).code === '23505' && (e as { constraint?: unknown }).constraint === 'users_email_key_unique') return true
  }
  return false
}

export function createPgUsersRepository (db: PgDb) {
  return {
    /**
     * The clash check and the insert in one transaction that first takes advisory locks on the
     * new name's fold key and skeleton (in a fixed order): two registrations of colliding names
     * on any instances run one after the other, the second seeing the first's row.
     */
    async insert (user: NewUser, alongside?: (created: User) => void): Promise<User | null> {
      const fold = usernameFold(user.username)
      const skeleton = usernameSkeleton(user.username)
      try {
        const created = await transactionAlongside(db, async (tx, write) => {
          for (const key of [`username_fold:${fold}`, `username_skeleton:${skeleton}`].sort()) {
            await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtextextended(${key}, 0))`)
          }
          const [clash] = await tx.select({ id: users.id }).from(users)
            .where(or(eq(users.usernameFold, fold), eq(users.usernameSkeleton, skeleton))).limit(1)
          if (clash !== undefined) return null
          if (user.email != null) {
            const [taken] = await tx.select({ id: users.id }).from(users).where(eq(users.emailKey, user.email.key)).limit(1)
            if (taken !== undefined) throw new EmailTakenError()
          }
          const [row] = await tx.insert(users).values({
            id: user.id,
            username: user.username,
            usernameKey: user.usernameKey,
            usernameFold: fold,
            usernameSkeleton: skeleton,
            passwordHash: user.passwordHash,
            email: user.email?.address ?? null,
            emailKey: user.email?.key ?? null,
            roles: user.roles,
            createdAt: user.now,
            updatedAt: user.now,
            passwordChangedAt: user.now
          }).returning()
          if (user.verification != null && user.email != null) {
            await tx.insert(accountTokens).values({
              tokenHash: user.verification.tokenHash,
              userId: user.id,
              purpose: 'verify_email',
              email: user.email.address,
              passwordStamp: user.now,
              createdAt: user.now,
              expiresAt: user.verification.expiresAt
            })
          }
          const created = toUser(row!)
          if (alongside !== undefined) await write(() => { alongside(created) })
          return created
        })
        return created
      } catch (err) {
        if (isEmailKeyViolation(err)) throw new EmailTakenError()
        if (isUniqueViolation(err)) return null
        throw err
      }
    },

    async findByEmailKey (key: string): Promise<User | null> {
      const [row] = await db.select().from(users).where(eq(users.emailKey, key))
      return row === undefined ? null : toUser(row)
    },

    async findByUsername (normalized: string): Promise<User | null> {
      const rows = await db.select().from(users).where(eq(users.usernameFold, usernameFold(normalized))).limit(16)
      if (rows.length === 1) return toUser(rows[0]!)
      const key = usernameKey(normalized)
      const exact = rows.find((r) => r.usernameKey === key)
      return exact === undefined ? null : toUser(exact)
    },

    async collisions (): Promise<Array<{ kind: 'fold' | 'skeleton', value: string, users: User[] }>> {
      const groups: Array<{ kind: 'fold' | 'skeleton', value: string, users: User[] }> = []
      const members = (users: User[]): string => users.map((u) => u.id).join('\n')
      const folds = new Set<string>()
      for (const [kind, column] of [['fold', users.usernameFold], ['skeleton', users.usernameSkeleton]] as const) {
        const values = await db.select({ value: column }).from(users).where(isNotNull(column))
          .groupBy(column).having(sql`count(*) > 1`).orderBy(asc(column))
        for (const { value } of values) {
          const group = (await db.select().from(users).where(and(isNotNull(column), eq(column, value!)))
            .orderBy(asc(users.createdAt), asc(users.id))).map(toUser)
          if (kind === 'fold') folds.add(members(group))
          else if (folds.has(members(group))) continue
          groups.push({ kind, value: value!, users: group })
        }
      }
      return groups
    },

    async findByUsernameKey (key: string): Promise<User | null> {
      const [row] = await db.select().from(users).where(eq(users.usernameKey, key))
      return row === undefined ? null : toUser(row)
    },

    async findById (id: string): Promise<User | null> {
      const [row] = await db.select().from(users).where(eq(users.id, id))
      return row === undefined ? null : toUser(row)
    },

    async rehashPassword (id: string, previous: string, passwordHash: string): Promise<boolean> {
      const r = await db.update(users).set({ passwordHash }).where(and(eq(users.id, id), eq(users.passwordHash, previous)))
      return (r.rowCount ?? 0) > 0
    },

    /**
     * As on SQLite. The UPDATE of the user row is conditional on the stamp and takes the row's
     * lock; a login starting a session meanwhile holds a share lock on the same row
     * (sessions repository, `start`), so one waits for the other, and the sessions UPDATE that
     * follows (a new statement, a new snapshot) sees every session committed before it.
     */
    async changePassword (c: { id: string, passwordHash: string, epoch: number, keepSessionId: string, now: Date }): Promise<{ changed: true, endedSessions: number } | { changed: false }> {
      return await db.transaction(async (tx) => {
        const updated = (await tx.update(users)
          .set({ passwordHash: c.passwordHash, updatedAt: c.now, passwordChangedAt: c.now, credentialEpoch: sql`${users.credentialEpoch} + 1` })
          .where(and(eq(users.id, c.id), eq(users.credentialEpoch, c.epoch), eq(users.disabled, false)))).rowCount ?? 0
        const ended = (await tx.update(sessions).set({ revokedAt: c.now, revokedReason: 'password_change' })
          .where(updated === 0
            ? and(eq(sessions.id, c.keepSessionId), isNull(sessions.revokedAt))
            : and(eq(sessions.userId, c.id), isNull(sessions.revokedAt), ne(sessions.id, c.keepSessionId)))).rowCount ?? 0
        return updated === 0 ? { changed: false as const } : { changed: true as const, endedSessions: ended }
      })
    },

    async setDisabled (id: string, disabled: boolean, now: Date): Promise<boolean> {
      const r = await db.update(users)
        .set(disabled ? { disabled, updatedAt: now, credentialEpoch: sql`${users.credentialEpoch} + 1` } : { disabled, updatedAt: now })
        .where(eq(users.id, id))
      return (r.rowCount ?? 0) > 0
    },

    async setRoles (id: string, roles: string[], now: Date): Promise<boolean> {
      const r = await db.update(users).set({ roles, updatedAt: now }).where(eq(users.id, id))
      return (r.rowCount ?? 0) > 0
    },

    async list (page: { limit: number, offset: number }): Promise<User[]> {
      return (await db.select().from(users).orderBy(asc(users.createdAt), asc(users.id))
        .limit(page.limit).offset(page.offset)).map(toUser)
    }
  }
}
