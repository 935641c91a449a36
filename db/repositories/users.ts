import { and, asc, eq, isNull, ne, sql } from 'drizzle-orm'
import type { Db } from '../client.js'
import { sessions, users } from '../schema.js'

export interface User {
  id: string
  username: string
  roles: string[]
  disabled: boolean
  createdAt: Date
  passwordHash: string
  /** The security stamp (db/schema.ts): what a password check read, for its commit to compare. */
  credentialEpoch: number
}

export interface NewUser {
  id: string
  username: string
  usernameKey: string
  passwordHash: string
  roles: string[]
  now: Date
}

function isUniqueViolation (err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE'
}

export function createUsersRepository (db: Db) {
  const byKey = db.select().from(users).where(eq(users.usernameKey, sql.placeholder('key'))).prepare()
  const byId = db.select().from(users).where(eq(users.id, sql.placeholder('id'))).prepare()

  const toUser = (row: typeof users.$inferSelect): User => ({
    id: row.id,
    username: row.username,
    roles: row.roles,
    disabled: row.disabled,
    createdAt: row.createdAt,
    passwordHash: row.passwordHash,
    credentialEpoch: row.credentialEpoch
  })

  return {
    /** Inserts the user, or returns null when the username (case-insensitively) is taken. */
    async insert (user: NewUser): Promise<User | null> {
      try {
        const row = db.insert(users).values({
          id: user.id,
          username: user.username,
          usernameKey: user.usernameKey,
          passwordHash: user.passwordHash,
          roles: user.roles,
          createdAt: user.now,
          updatedAt: user.now,
          passwordChangedAt: user.now
        }).returning().get()
        return toUser(row)
      } catch (err) {
        if (isUniqueViolation(err)) return null
        throw err
      }
    },

    async findByUsernameKey (key: string): Promise<User | null> {
      const row = byKey.get({ key })
      return row === undefined ? null : toUser(row)
    },

    async findById (id: string): Promise<User | null> {
      const row = byId.get({ id })
      return row === undefined ? null : toUser(row)
    },

    /**
     * Stores a stronger hash of the same password, unless the hash was changed since `previous`
     * was read (a rehash must never bring back a password changed meanwhile). True when stored.
     */
    async rehashPassword (id: string, previous: string, passwordHash: string): Promise<boolean> {
      return db.update(users).set({ passwordHash })
        .where(and(eq(users.id, id), eq(users.passwordHash, previous))).run().changes > 0
    },

    /**
     * A password change, in one transaction: the new hash and a new security stamp, and every
     * session but `keepSessionId` ended; committed only while the stamp is still `epoch` (the
     * one read with the hash the current password was checked against) and the account is
     * enabled. Otherwise something withdrew that check meanwhile (another password change,
     * logout-all, a disable): nothing changes but that `keepSessionId` ends too, and the answer
     * is `changed: false`.
     */
    async changePassword (c: { id: string, passwordHash: string, epoch: number, keepSessionId: string, now: Date }): Promise<{ changed: true, endedSessions: number } | { changed: false }> {
      return db.transaction((tx) => {
        const updated = tx.update(users)
          .set({ passwordHash: c.passwordHash, updatedAt: c.now, passwordChangedAt: c.now, credentialEpoch: sql`${users.credentialEpoch} + 1` })
          .where(and(eq(users.id, c.id), eq(users.credentialEpoch, c.epoch), eq(users.disabled, false))).run().changes
        const ended = tx.update(sessions).set({ revokedAt: c.now, revokedReason: 'password_change' })
          .where(updated === 0
            ? and(eq(sessions.id, c.keepSessionId), isNull(sessions.revokedAt))
            : and(eq(sessions.userId, c.id), isNull(sessions.revokedAt), ne(sessions.id, c.keepSessionId)))
          .run().changes
        return updated === 0 ? { changed: false as const } : { changed: true as const, endedSessions: ended }
      }, { behavior: 'immediate' })
    },

    /** Disabling also raises the security stamp, so that no login checked before it starts a session. */
    async setDisabled (id: string, disabled: boolean, now: Date): Promise<boolean> {
      return db.update(users)
        .set(disabled ? { disabled, updatedAt: now, credentialEpoch: sql`${users.credentialEpoch} + 1` } : { disabled, updatedAt: now })
        .where(eq(users.id, id)).run().changes > 0
    },

    async setRoles (id: string, roles: string[], now: Date): Promise<boolean> {
      return db.update(users).set({ roles, updatedAt: now }).where(eq(users.id, id)).run().changes > 0
    },

    /** Users in the order they registered, for administration. */
    async list (page: { limit: number, offset: number }): Promise<User[]> {
      return db.select().from(users).orderBy(asc(users.createdAt), asc(users.id))
        .limit(page.limit).offset(page.offset).all().map(toUser)
    }
  }
}

export type UsersRepository = ReturnType<typeof createUsersRepository>
