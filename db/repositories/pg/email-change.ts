/**
 * Address changes on PostgreSQL: the same contract as db/repositories/email-change.ts. The
 * token's DELETE decides between concurrent spends (the second waits for the first's row lock,
 * then finds the row gone); the user row is locked (FOR UPDATE) before it is read, and a
 * concurrent claim of the address by another account is caught by the unique index.
 */
import { and, eq, gt, isNull, ne, sql } from 'drizzle-orm'
import type { ChangeOutcome, EmailChangeRepository } from '../email-change.js'
import type { PgDb } from '../../pg/client.js'
import { accountTokens, sessions, users } from '../../pg/schema.js'
import { transactionAlongside, type PgTx } from './alongside.js'

const TAKEN = Symbol('taken')
const INVALID = Symbol('invalid')

function isEmailKeyViolation (err: unknown): boolean {
  for (let e = err; typeof e === 'object' && e !== null; e = (e as { cause?: unknown }).cause) {
    if ((e as { code?: unknown }).code === '23505' && (e as { constraint?: unknown }).constraint === 'users_email_key_unique') return true
  }
  return false
}

async function spend (tx: PgTx, tokenHash: Buffer, purpose: 'change_email' | 'undo_email_change', userId: string, address: string, now: Date): Promise<boolean> {
  const r = await tx.delete(accountTokens).where(and(
    eq(accountTokens.tokenHash, tokenHash),
    eq(accountTokens.purpose, purpose),
    eq(accountTokens.userId, userId),
    eq(accountTokens.email, address),
    gt(accountTokens.expiresAt, now),
    sql`${accountTokens.passwordStamp} = (SELECT ${users.passwordChangedAt} FROM ${users} WHERE ${users.id} = ${userId})`
  ))
  return (r.rowCount ?? 0) === 1
}

async function takenByAnother (tx: PgTx, key: string, userId: string): Promise<boolean> {
  const [row] = await tx.select({ id: users.id }).from(users).where(and(eq(users.emailKey, key), ne(users.id, userId))).limit(1)
  return row !== undefined
}

export function createPgEmailChangeRepository (db: PgDb): EmailChangeRepository {
  const run = async (fn: (tx: PgTx, write: (alongside: () => void) => Promise<void>) => Promise<ChangeOutcome>): Promise<ChangeOutcome> => {
    try {
      return await transactionAlongside(db, fn)
    } catch (err) {
      if (err === INVALID) return { ok: false, reason: 'invalid' }
      if (err === TAKEN || isEmailKeyViolation(err)) return { ok: false, reason: 'taken' }
      throw err
    }
  }

  return {
    async confirm (c, alongside) {
      return await run(async (tx, write) => {
        if (!await spend(tx, c.tokenHash, 'change_email', c.userId, c.email.address, c.now)) throw INVALID
        const [user] = await tx.select({ email: users.email, disabled: users.disabled, passwordChangedAt: users.passwordChangedAt })
          .from(users).where(eq(users.id, c.userId)).for('update')
        if (user === undefined || user.disabled) throw INVALID
        if (await takenByAnother(tx, c.email.key, c.userId)) throw TAKEN
        await tx.update(users).set({ email: c.email.address, emailKey: c.email.key, emailVerifiedAt: c.now, updatedAt: c.now }).where(eq(users.id, c.userId))
        if (user.email !== null) {
          await tx.delete(accountTokens).where(and(eq(accountTokens.userId, c.userId), eq(accountTokens.purpose, 'undo_email_change')))
          await tx.insert(accountTokens).values({
            tokenHash: c.undo.tokenHash,
            userId: c.userId,
            purpose: 'undo_email_change',
            email: user.email,
            passwordStamp: user.passwordChangedAt,
            createdAt: c.now,
            expiresAt: c.undo.expiresAt
          })
        }
        await write(() => { alongside(user.email) })
        return { ok: true, previous: user.email }
      })
    },

    async undo (u, alongside) {
      return await run(async (tx, write) => {
        if (!await spend(tx, u.tokenHash, 'undo_email_change', u.userId, u.email.address, u.now)) throw INVALID
        const [user] = await tx.select({ email: users.email }).from(users).where(eq(users.id, u.userId)).for('update')
        if (user === undefined) throw INVALID
        if (await takenByAnother(tx, u.email.key, u.userId)) throw TAKEN
        await tx.update(users).set({
          email: u.email.address,
          emailKey: u.email.key,
          emailVerifiedAt: u.now,
          updatedAt: u.now,
          credentialEpoch: sql`${users.credentialEpoch} + 1`
        }).where(eq(users.id, u.userId))
        await tx.update(sessions).set({ revokedAt: u.now, revokedReason: 'email_change_undone' })
          .where(and(eq(sessions.userId, u.userId), isNull(sessions.revokedAt)))
        await tx.delete(accountTokens).where(eq(accountTokens.userId, u.userId))
        await write(alongside)
        return { ok: true, previous: user.email }
      })
    }
  }
}
