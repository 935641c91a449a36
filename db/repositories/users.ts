import { asc, eq, sql } from 'drizzle-orm'
import type { Db } from '../client.js'
import { users } from '../schema.js'

export interface User {
  id: string
  username: string
  roles: string[]
  disabled: boolean
  createdAt: Date
  passwordHash: string
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
    passwordHash: row.passwordHash
  })

  return {
    /**
     * Inserts the user, or returns null when the username (case-insensitively) is taken.
     * Inside a transaction: an INSERT … RETURNING read with `.get()` alone commits when the
     * statement is reset, and better-sqlite3 ignores an error there (a full disk in WAL mode),
     * so the row would be answered but never stored. A transaction's COMMIT reports it.
     */
    async insert (user: NewUser): Promise<User | null> {
      try {
        const row = db.transaction((tx) => tx.insert(users).values({
          id: user.id,
          username: user.username,
          usernameKey: user.usernameKey,
          passwordHash: user.passwordHash,
          roles: user.roles,
          createdAt: user.now,
          updatedAt: user.now,
          passwordChangedAt: user.now
        }).returning().get())
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

    /** Replaces the hash; `changed` marks a new password rather than a rehash of the same one. */
    async updatePasswordHash (id: string, passwordHash: string, now: Date, changed: boolean): Promise<void> {
      db.update(users)
        .set(changed ? { passwordHash, updatedAt: now, passwordChangedAt: now } : { passwordHash })
        .where(eq(users.id, id)).run()
    },

    async setDisabled (id: string, disabled: boolean, now: Date): Promise<boolean> {
      return db.update(users).set({ disabled, updatedAt: now }).where(eq(users.id, id)).run().changes > 0
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
