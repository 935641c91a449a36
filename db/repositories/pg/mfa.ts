/** Second-factor state on PostgreSQL: the same rules as db/repositories/mfa.ts, one conditional UPDATE per single-use check. */
import { and, eq, gt, isNotNull, isNull, lt, lte, or, sql } from 'drizzle-orm'
import type { MfaChallenge, MfaRepository, NewChallenge, TotpFactor } from '../mfa.js'
import type { PgDb } from '../../pg/client.js'
import { mfaChallenges, recoveryCodes, totpFactors } from '../../pg/schema.js'

const count = (r: { rowCount: number | null }): number => r.rowCount ?? 0

export function createPgMfaRepository (db: PgDb) {
  return {
    async totp (userId: string): Promise<TotpFactor | null> {
      const [row] = await db.select().from(totpFactors).where(eq(totpFactors.userId, userId))
      return row ?? null
    },

    async setPendingTotp (userId: string, secret: string, now: Date): Promise<boolean> {
      return await db.transaction(async (tx) => {
        // Inserted first (or locked when present), so that two enrolments of one user serialise on the row.
        await tx.insert(totpFactors).values({ userId, secret, createdAt: now, confirmedAt: null, lastStep: null }).onConflictDoNothing()
        const [current] = await tx.select({ confirmedAt: totpFactors.confirmedAt }).from(totpFactors).where(eq(totpFactors.userId, userId)).for('update')
        if (current?.confirmedAt != null) return false
        await tx.update(totpFactors).set({ secret, createdAt: now, lastStep: null }).where(eq(totpFactors.userId, userId))
        return true
      })
    },

    async confirmTotp (userId: string, step: number, codeHashes: Buffer[], now: Date): Promise<boolean> {
      return await db.transaction(async (tx) => {
        const changed = count(await tx.update(totpFactors).set({ confirmedAt: now, lastStep: step })
          .where(and(eq(totpFactors.userId, userId), isNull(totpFactors.confirmedAt))))
        if (changed === 0) return false
        await tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId))
        await tx.insert(recoveryCodes).values(codeHashes.map((codeHash) => ({ userId, codeHash, createdAt: now })))
        return true
      })
    },

    async useTotpStep (userId: string, step: number): Promise<boolean> {
      return await db.transaction(async (tx) => count(await tx.update(totpFactors).set({ lastStep: step })
        .where(and(eq(totpFactors.userId, userId), isNotNull(totpFactors.confirmedAt), or(isNull(totpFactors.lastStep), lt(totpFactors.lastStep, step))))) > 0)
    },

    async deleteTotp (userId: string): Promise<boolean> {
      return await db.transaction(async (tx) => {
        const n = count(await tx.delete(totpFactors).where(eq(totpFactors.userId, userId)))
        await tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId))
        return n > 0
      })
    },

    async replaceRecoveryCodes (userId: string, codeHashes: Buffer[], now: Date): Promise<void> {
      await db.transaction(async (tx) => {
        await tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId))
        await tx.insert(recoveryCodes).values(codeHashes.map((codeHash) => ({ userId, codeHash, createdAt: now })))
      })
    },

    async useRecoveryCode (userId: string, codeHash: Buffer, now: Date): Promise<boolean> {
      return await db.transaction(async (tx) => count(await tx.update(recoveryCodes).set({ usedAt: now })
        .where(and(eq(recoveryCodes.userId, userId), eq(recoveryCodes.codeHash, codeHash), isNull(recoveryCodes.usedAt)))) > 0)
    },

    async unusedRecoveryCodes (userId: string): Promise<number> {
      const [row] = await db.select({ n: sql<number>`count(*)::int` }).from(recoveryCodes)
        .where(and(eq(recoveryCodes.userId, userId), isNull(recoveryCodes.usedAt)))
      return row?.n ?? 0
    },

    async createChallenge (c: NewChallenge): Promise<void> {
      await db.transaction(async (tx) => {
        await tx.insert(mfaChallenges).values({
          tokenHash: c.tokenHash,
          userId: c.userId,
          purpose: c.purpose,
          transport: c.transport,
          userAgent: c.userAgent,
          credentialEpoch: c.credentialEpoch,
          createdAt: c.now,
          expiresAt: c.expiresAt
        })
      })
    },

    async findChallenge (tokenHash: Buffer): Promise<MfaChallenge | null> {
      const [row] = await db.select().from(mfaChallenges).where(eq(mfaChallenges.tokenHash, tokenHash))
      if (row === undefined) return null
      const { tokenHash: _hash, ...rest } = row
      return rest
    },

    async spendChallenge (id: number, now: Date): Promise<boolean> {
      return await db.transaction(async (tx) => count(await tx.update(mfaChallenges).set({ usedAt: now })
        .where(and(eq(mfaChallenges.id, id), isNull(mfaChallenges.usedAt), gt(mfaChallenges.expiresAt, now)))) > 0)
    },

    async pruneChallenges (before: Date): Promise<number> {
      return count(await db.delete(mfaChallenges).where(lte(mfaChallenges.expiresAt, before)))
    }
  } satisfies MfaRepository
}
