import { and, asc, eq, isNotNull, isNull, ne, or, sql } from 'drizzle-orm'
import { usernameFold, usernameKey, usernameSkeleton } from '../username-keys.js'
import type { Db } from '../client.js'
import { accountTokens, sessions, users } from '../schema.js'

export interface User {
  id: string
  username: string
  roles: string[]
  disabled: boolean
  createdAt: Date
  passwordHash: string
  /** The security stamp (db/schema.ts): what a password check read, for its commit to compare. */
  credentialEpoch: number
  /** When the password was last set: account tokens carry it (`password_stamp`) and are void once it moves. */
  passwordChangedAt: Date
  /** The address as given (normalised), or null when the account has none. */
  email: string | null
  emailVerified: boolean
}

/** An address for a new account: as shown, and the key it is unique by (src/auth/email.ts). */
export interface NewEmail {
  address: string
  key: string
}

/** Thrown by `insert` when another account has the address's key: nothing was written. */
export class EmailTakenError extends Error {
  constructor () { super('e-mail address taken'); this.name = 'EmailTakenError' }
}

export interface NewUser {
  id: string
  username: string
  /** The lower-cased name (db/username-keys.ts `usernameKey`); the fold key and skeleton are derived here. */
  usernameKey: string
  passwordHash: string
  roles: string[]
  now: Date
  email?: NewEmail | null
  /**
   * A verification token for the new address (purpose `verify_email`, db/repositories/
   * account-tokens.ts), stored with the account: the mail that carries it is enqueued by the
   * insert's `alongside`, so account, token and mail commit together or not at all.
   */
  verification?: { tokenHash: Buffer, expiresAt: Date } | null
}

function isUniqueViolation (err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE'
}

export function createUsersRepository (db: Db) {
  const byKey = db.select().from(users).where(eq(users.usernameKey, sql.placeholder('key'))).prepare()
  const byFold = db.select().from(users).where(eq(users.usernameFold, sql.placeholder('fold'))).limit(16).prepare()
  const clash = db.select({ id: users.id }).from(users)
    .where(or(eq(users.usernameFold, sql.placeholder('fold')), eq(users.usernameSkeleton, sql.placeholder('skeleton')))).limit(1).prepare()
  const byId = db.select().from(users).where(eq(users.id, sql.placeholder('id'))).prepare()
  const byEmailKey = db.select().from(users).where(eq(users.emailKey, sql.placeholder('key'))).prepare()

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

  return {
    /**
     * Inserts the user, or returns null when the name is taken: another row has the same fold
     * key (case-insensitively, all of Unicode), the same confusable skeleton, or the same
     * lower-cased key. The check and the insert share one IMMEDIATE transaction, so no other
     * writer (another process included) slips a colliding name in between.
     * Inside a transaction also because an INSERT … RETURNING read with `.get()` alone commits
     * when the statement is reset, and better-sqlite3 ignores an error there (a full disk in WAL
     * mode): the row would be answered but never stored. A transaction's COMMIT reports it.
     */
    async insert (user: NewUser, alongside?: (created: User) => void): Promise<User | null> {
      const fold = usernameFold(user.username)
      const skeleton = usernameSkeleton(user.username)
      try {
        return db.transaction((tx) => {
          if (clash.get({ fold, skeleton }) !== undefined) return null
          if (user.email != null && byEmailKey.get({ key: user.email.key }) !== undefined) throw new EmailTakenError()
          const row = tx.insert(users).values({
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
          }).returning().get()
          if (user.verification != null && user.email != null) {
            tx.insert(accountTokens).values({
              tokenHash: user.verification.tokenHash,
              userId: user.id,
              purpose: 'verify_email',
              email: user.email.address,
              passwordStamp: user.now,
              createdAt: user.now,
              expiresAt: user.verification.expiresAt
            }).run()
          }
          const created = toUser(row)
          // Synchronous (the mail and the audit event), inside this transaction: a failure there
          // rolls the account back.
          alongside?.(created)
          return created
        }, { behavior: 'immediate' })
      } catch (err) {
        if (isUniqueViolation(err)) return null
        throw err
      }
    },

    /**
     * The user a typed name means: the one row with its fold key. Where older rows share a fold
     * key (registered before fold keys), the row whose lower-cased key matches the name as
     * typed, so that each still logs in with the name it registered; else nobody.
     */
    async findByUsername (normalized: string): Promise<User | null> {
      const rows = byFold.all({ fold: usernameFold(normalized) })
      if (rows.length === 1) return toUser(rows[0]!)
      const key = usernameKey(normalized)
      const exact = rows.find((r) => r.usernameKey === key)
      return exact === undefined ? null : toUser(exact)
    },

    /**
     * Groups of users whose fold keys or skeletons are the same (from before those were
     * enforced). Names with one fold key share their skeleton too: a skeleton group with the
     * very members of a fold group is left out.
     */
    async collisions (): Promise<Array<{ kind: 'fold' | 'skeleton', value: string, users: User[] }>> {
      const groups: Array<{ kind: 'fold' | 'skeleton', value: string, users: User[] }> = []
      const members = (users: User[]): string => users.map((u) => u.id).join('\n')
      const folds = new Set<string>()
      for (const [kind, column] of [['fold', users.usernameFold], ['skeleton', users.usernameSkeleton]] as const) {
        const values = db.select({ value: column }).from(users).where(isNotNull(column))
          .groupBy(column).having(sql`count(*) > 1`).orderBy(asc(column)).all()
        for (const { value } of values) {
          const group = db.select().from(users).where(and(isNotNull(column), eq(column, value!)))
            .orderBy(asc(users.createdAt), asc(users.id)).all().map(toUser)
          if (kind === 'fold') folds.add(members(group))
          else if (folds.has(members(group))) continue
          groups.push({ kind, value: value!, users: group })
        }
      }
      return groups
    },

    async findByUsernameKey (key: string): Promise<User | null> {
      const row = byKey.get({ key })
      return row === undefined ? null : toUser(row)
    },

    async findById (id: string): Promise<User | null> {
      const row = byId.get({ id })
      return row === undefined ? null : toUser(row)
    },

    /** The account whose address has this key (src/auth/email.ts `emailKey`), or null. */
    async findByEmailKey (key: string): Promise<User | null> {
      const row = byEmailKey.get({ key })
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
