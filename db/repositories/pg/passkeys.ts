/** Passkeys and WebAuthn challenges on PostgreSQL (db/repositories/passkeys.ts). */
import { and, asc, eq, gt, isNull, lte } from 'drizzle-orm'
import type { PgDb } from '../../pg/client.js'
import { passkeys, webauthnChallenges } from '../../pg/schema.js'
import type { ChallengePurpose, NewPasskey, Passkey, PasskeysRepository } from '../passkeys.js'

function isUniqueViolation (err: unknown): boolean {
  const e = err as { code?: string, cause?: { code?: string } } | null
  return e?.code === '23505' || e?.cause?.code === '23505'
}

export function createPgPasskeysRepository (db: PgDb): PasskeysRepository {
  return {
    async saveChallenge (challengeHash: Buffer, purpose: ChallengePurpose, userId: string | null, expiresAt: Date, now: Date): Promise<void> {
      await db.transaction(async (tx) => {
        await tx.delete(webauthnChallenges).where(lte(webauthnChallenges.expiresAt, now))
        await tx.insert(webauthnChallenges).values({ challengeHash, purpose, userId, expiresAt })
      })
    },

    async consumeChallenge (challengeHash: Buffer, purpose: ChallengePurpose, userId: string | null, now: Date): Promise<boolean> {
      const r = await db.delete(webauthnChallenges).where(and(
        eq(webauthnChallenges.challengeHash, challengeHash),
        eq(webauthnChallenges.purpose, purpose),
        userId === null ? isNull(webauthnChallenges.userId) : eq(webauthnChallenges.userId, userId),
        gt(webauthnChallenges.expiresAt, now)
      ))
      return (r.rowCount ?? 0) === 1
    },

    async insert (passkey: NewPasskey): Promise<boolean> {
      try {
        await db.insert(passkeys).values(passkey)
        return true
      } catch (err) {
        if (isUniqueViolation(err)) return false
        throw err
      }
    },

    async listForUser (userId: string): Promise<Passkey[]> {
      return await db.select().from(passkeys).where(eq(passkeys.userId, userId)).orderBy(asc(passkeys.createdAt), asc(passkeys.id))
    },

    async findByCredentialId (credentialId: string): Promise<Passkey | null> {
      const [row] = await db.select().from(passkeys).where(eq(passkeys.credentialId, credentialId))
      return row ?? null
    },

    async recordUse (id: string, expected: number, counter: number, now: Date): Promise<boolean> {
      const r = await db.update(passkeys).set({ counter, lastUsedAt: now }).where(and(eq(passkeys.id, id), eq(passkeys.counter, expected)))
      return (r.rowCount ?? 0) === 1
    },

    async rename (id: string, userId: string, name: string): Promise<Passkey | null> {
      const [row] = await db.update(passkeys).set({ name }).where(and(eq(passkeys.id, id), eq(passkeys.userId, userId))).returning()
      return row ?? null
    },

    async delete (id: string, userId: string): Promise<boolean> {
      const r = await db.delete(passkeys).where(and(eq(passkeys.id, id), eq(passkeys.userId, userId)))
      return (r.rowCount ?? 0) === 1
    }
  }
}
