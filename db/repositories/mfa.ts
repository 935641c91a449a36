/**
 * Second-factor state: TOTP factors, recovery codes and the MFA challenges of logins half done
 * (db/schema.ts says what each column holds). Every check that must hold once (a time step used
 * once, a recovery code used once, a challenge spent once) is a conditional UPDATE whose row
 * count says who won, so two requests racing with one code or one challenge cannot both pass,
 * on one instance or many.
 */
import { and, eq, gt, isNotNull, isNull, lt, lte, or, sql } from 'drizzle-orm'
import type { Db } from '../client.js'
import { mfaChallenges, recoveryCodes, totpFactors } from '../schema.js'

export interface TotpFactor {
  userId: string
  /** Sealed (or, without KEY_ENCRYPTION_KEY, clear) base32 secret: src/auth/totp.ts opens it. */
  secret: string
  createdAt: Date
  confirmedAt: Date | null
  lastStep: number | null
}

export interface NewChallenge {
  tokenHash: Buffer
  userId: string
  purpose: 'login' | 'enroll'
  transport: 'cookie' | 'body'
  userAgent: string | null
  credentialEpoch: number
  now: Date
  expiresAt: Date
}

export interface MfaChallenge {
  id: number
  userId: string
  purpose: 'login' | 'enroll'
  transport: 'cookie' | 'body'
  userAgent: string | null
  credentialEpoch: number
  createdAt: Date
  expiresAt: Date
  usedAt: Date | null
}

export function createMfaRepository (db: Db) {
  return {
    async totp (userId: string): Promise<TotpFactor | null> {
      return db.select().from(totpFactors).where(eq(totpFactors.userId, userId)).get() ?? null
    },

    /**
     * Stores a pending TOTP secret, replacing a pending one; false (changing nothing) when the
     * user has a confirmed factor.
     */
    async setPendingTotp (userId: string, secret: string, now: Date): Promise<boolean> {
      return db.transaction((tx) => {
        const current = tx.select({ confirmedAt: totpFactors.confirmedAt }).from(totpFactors).where(eq(totpFactors.userId, userId)).get()
        if (current?.confirmedAt != null) return false
        tx.insert(totpFactors).values({ userId, secret, createdAt: now, confirmedAt: null, lastStep: null })
          .onConflictDoUpdate({ target: totpFactors.userId, set: { secret, createdAt: now, lastStep: null } }).run()
        return true
      }, { behavior: 'immediate' })
    },

    /**
     * Activates the pending factor with the step of the code that confirmed it, and stores a new
     * set of recovery codes in place of any old one, in one transaction; false when there was
     * no pending factor (or it was confirmed meanwhile).
     */
    async confirmTotp (userId: string, step: number, codeHashes: Buffer[], now: Date): Promise<boolean> {
      return db.transaction((tx) => {
        const changed = tx.update(totpFactors).set({ confirmedAt: now, lastStep: step })
          .where(and(eq(totpFactors.userId, userId), isNull(totpFactors.confirmedAt))).run().changes
        if (changed === 0) return false
        tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId)).run()
        tx.insert(recoveryCodes).values(codeHashes.map((codeHash) => ({ userId, codeHash, createdAt: now }))).run()
        return true
      }, { behavior: 'immediate' })
    },

    /**
     * Records `step` as the last used step of the user's confirmed factor, only when it is later
     * than the stored one: true for the one request that may accept the code, false for a
     * replay (this step or an earlier one was used) or when there is no confirmed factor.
     */
    async useTotpStep (userId: string, step: number): Promise<boolean> {
      return db.transaction((tx) => tx.update(totpFactors).set({ lastStep: step })
        .where(and(eq(totpFactors.userId, userId), isNotNull(totpFactors.confirmedAt), or(isNull(totpFactors.lastStep), lt(totpFactors.lastStep, step))))
        .run().changes > 0, { behavior: 'immediate' })
    },

    /** Removes the TOTP factor and the recovery codes (no second factor is left for them to stand in for). */
    async deleteTotp (userId: string): Promise<boolean> {
      return db.transaction((tx) => {
        const n = tx.delete(totpFactors).where(eq(totpFactors.userId, userId)).run().changes
        tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId)).run()
        return n > 0
      }, { behavior: 'immediate' })
    },

    /** A new set of recovery codes; the old set is deleted in the same transaction. */
    async replaceRecoveryCodes (userId: string, codeHashes: Buffer[], now: Date): Promise<void> {
      db.transaction((tx) => {
        tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId)).run()
        tx.insert(recoveryCodes).values(codeHashes.map((codeHash) => ({ userId, codeHash, createdAt: now }))).run()
      }, { behavior: 'immediate' })
    },

    /** Spends the user's unused recovery code with this digest; true for the one request that did. */
    async useRecoveryCode (userId: string, codeHash: Buffer, now: Date): Promise<boolean> {
      return db.transaction((tx) => tx.update(recoveryCodes).set({ usedAt: now })
        .where(and(eq(recoveryCodes.userId, userId), eq(recoveryCodes.codeHash, codeHash), isNull(recoveryCodes.usedAt)))
        .run().changes > 0, { behavior: 'immediate' })
    },

    async unusedRecoveryCodes (userId: string): Promise<number> {
      return db.select({ n: sql<number>`count(*)` }).from(recoveryCodes)
        .where(and(eq(recoveryCodes.userId, userId), isNull(recoveryCodes.usedAt))).get()?.n ?? 0
    },

    async createChallenge (c: NewChallenge): Promise<void> {
      db.transaction((tx) => {
        tx.insert(mfaChallenges).values({
          tokenHash: c.tokenHash,
          userId: c.userId,
          purpose: c.purpose,
          transport: c.transport,
          userAgent: c.userAgent,
          credentialEpoch: c.credentialEpoch,
          createdAt: c.now,
          expiresAt: c.expiresAt
        }).run()
      }, { behavior: 'immediate' })
    },

    async findChallenge (tokenHash: Buffer): Promise<MfaChallenge | null> {
      const row = db.select().from(mfaChallenges).where(eq(mfaChallenges.tokenHash, tokenHash)).get()
      if (row === undefined) return null
      const { tokenHash: _hash, ...rest } = row
      return rest
    },

    /** Marks the challenge used, only while it is unused and unexpired: true for the one request that may finish the login. */
    async spendChallenge (id: number, now: Date): Promise<boolean> {
      return db.transaction((tx) => tx.update(mfaChallenges).set({ usedAt: now })
        .where(and(eq(mfaChallenges.id, id), isNull(mfaChallenges.usedAt), gt(mfaChallenges.expiresAt, now)))
        .run().changes > 0, { behavior: 'immediate' })
    },

    /** Deletes challenges that expired before `before` (housekeeping). */
    async pruneChallenges (before: Date): Promise<number> {
      return db.delete(mfaChallenges).where(lte(mfaChallenges.expiresAt, before)).run().changes
    }
  }
}

export type MfaRepository = ReturnType<typeof createMfaRepository>
