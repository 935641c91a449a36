/**
 * Changing an account's e-mail address (routes/auth/email-change.ts): spending a
 * `change_email` token sets the new address, spending an `undo_email_change` token puts the old
 * one back. Each is one transaction: the token row is deleted first and its row count decides
 * (of two concurrent spends one wins), then the account changes, the follow-up token is stored,
 * and `alongside` (synchronous: the mail and the audit event) runs, so all of it commits or
 * none. A token is void once the account's password has changed since it was issued
 * (`password_stamp`): whoever recovers an account by a new password also stops a change an
 * intruder asked for.
 *
 * An address another account holds refuses the change, by the check inside the transaction
 * and, against a concurrent writer, by the unique index on `email_key`; nothing is written then.
 */
import { and, eq, gt, ne, isNull, sql } from 'drizzle-orm'
import type { Db } from '../client.js'
import { accountTokens, sessions, users } from '../schema.js'

/** An address as stored and the key it is unique by (src/auth/email.ts). */
export interface AddressAndKey { address: string, key: string }

export interface ConfirmChange {
  tokenHash: Buffer
  userId: string
  /** The token's address (the new one). */
  email: AddressAndKey
  now: Date
  /** The undo token to store for the old address (its digest), when the account had one. */
  undo: { tokenHash: Buffer, expiresAt: Date }
}

export interface UndoChange {
  tokenHash: Buffer
  userId: string
  /** The token's address (the old one, to restore). */
  email: AddressAndKey
  now: Date
}

export type ChangeOutcome =
  | { ok: true, previous: string | null }
  | { ok: false, reason: 'invalid' | 'taken' }

export interface EmailChangeRepository {
  /**
   * Spends a live `change_email` token of `userId` for `email`: the account gets the address,
   * verified now (the link proved it), and, when it had an address before, an undo token for
   * it. `alongside(previous)` gets the former address (null when there was none).
   */
  confirm: (c: ConfirmChange, alongside: (previous: string | null) => void) => Promise<ChangeOutcome>
  /**
   * Spends a live `undo_email_change` token: the old address back (verified: it was proven
   * before), the security stamp raised, every session ended and every other account token of
   * the account deleted (whoever changed the address may hold any of them).
   */
  undo: (u: UndoChange, alongside: () => void) => Promise<ChangeOutcome>
}

const TAKEN = Symbol('taken')
const INVALID = Symbol('invalid')

function isUniqueViolation (err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE'
}

export function createEmailChangeRepository (db: Db): EmailChangeRepository {
  /** Deletes the token if it is live and the password has not changed since; true when it did. */
  const spend = (tokenHash: Buffer, purpose: 'change_email' | 'undo_email_change', userId: string, address: string, now: Date): boolean =>
    db.delete(accountTokens).where(and(
      eq(accountTokens.tokenHash, tokenHash),
      eq(accountTokens.purpose, purpose),
      eq(accountTokens.userId, userId),
      eq(accountTokens.email, address),
      gt(accountTokens.expiresAt, now),
      sql`${accountTokens.passwordStamp} = (SELECT ${users.passwordChangedAt} FROM ${users} WHERE ${users.id} = ${userId})`
    )).run().changes === 1

  const takenByAnother = (key: string, userId: string): boolean =>
    db.select({ id: users.id }).from(users).where(and(eq(users.emailKey, key), ne(users.id, userId))).get() !== undefined

  const run = <T>(fn: () => T): T | ChangeOutcome => {
    try {
      return db.transaction(fn, { behavior: 'immediate' })
    } catch (err) {
      if (err === INVALID) return { ok: false, reason: 'invalid' }
      if (err === TAKEN || isUniqueViolation(err)) return { ok: false, reason: 'taken' }
      throw err
    }
  }

  return {
    async confirm (c, alongside) {
      return run((): ChangeOutcome => {
        if (!spend(c.tokenHash, 'change_email', c.userId, c.email.address, c.now)) throw INVALID
        const user = db.select({ email: users.email, disabled: users.disabled, passwordChangedAt: users.passwordChangedAt }).from(users).where(eq(users.id, c.userId)).get()
        if (user === undefined || user.disabled) throw INVALID
        if (takenByAnother(c.email.key, c.userId)) throw TAKEN
        db.update(users).set({ email: c.email.address, emailKey: c.email.key, emailVerifiedAt: c.now, updatedAt: c.now }).where(eq(users.id, c.userId)).run()
        if (user.email !== null) {
          db.delete(accountTokens).where(and(eq(accountTokens.userId, c.userId), eq(accountTokens.purpose, 'undo_email_change'))).run()
          db.insert(accountTokens).values({
            tokenHash: c.undo.tokenHash,
            userId: c.userId,
            purpose: 'undo_email_change',
            email: user.email,
            passwordStamp: user.passwordChangedAt,
            createdAt: c.now,
            expiresAt: c.undo.expiresAt
          }).run()
        }
        alongside(user.email)
        return { ok: true, previous: user.email }
      }) as ChangeOutcome
    },

    async undo (u, alongside) {
      return run((): ChangeOutcome => {
        if (!spend(u.tokenHash, 'undo_email_change', u.userId, u.email.address, u.now)) throw INVALID
        const user = db.select({ email: users.email }).from(users).where(eq(users.id, u.userId)).get()
        if (user === undefined) throw INVALID
        if (takenByAnother(u.email.key, u.userId)) throw TAKEN
        db.update(users).set({
          email: u.email.address,
          emailKey: u.email.key,
          emailVerifiedAt: u.now,
          updatedAt: u.now,
          credentialEpoch: sql`${users.credentialEpoch} + 1`
        }).where(eq(users.id, u.userId)).run()
        db.update(sessions).set({ revokedAt: u.now, revokedReason: 'email_change_undone' })
          .where(and(eq(sessions.userId, u.userId), isNull(sessions.revokedAt))).run()
        db.delete(accountTokens).where(eq(accountTokens.userId, u.userId)).run()
        alongside()
        return { ok: true, previous: user.email }
      }) as ChangeOutcome
    }
  }
}
