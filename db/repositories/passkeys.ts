/**
 * Passkeys (WebAuthn credentials) and the single-use challenges of their ceremonies. Every
 * write is one statement inside a transaction, so that a failed commit is reported (see
 * users.ts `insert`); what a ceremony must do once (consume a challenge, advance a counter)
 * is a conditional statement whose row count says whether it happened.
 */
import { and, asc, eq, gt, lte, sql } from 'drizzle-orm'
import type { Db } from '../client.js'
import { passkeys, webauthnChallenges } from '../schema.js'

export type ChallengePurpose = 'register' | 'login' | 'factor'

export interface Passkey {
  id: string
  userId: string
  credentialId: string
  publicKey: Buffer
  counter: number
  transports: string[]
  name: string
  createdAt: Date
  lastUsedAt: Date | null
}

export type NewPasskey = Omit<Passkey, 'lastUsedAt'>

function isUniqueViolation (err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY'
}

export function createPasskeysRepository (db: Db) {
  const write = <T>(fn: () => T): T => db.transaction(fn, { behavior: 'immediate' })

  return {
    /** Stores a challenge's digest until `expiresAt`; expired ones go on the way. */
    async saveChallenge (challengeHash: Buffer, purpose: ChallengePurpose, userId: string | null, expiresAt: Date, now: Date): Promise<void> {
      write(() => {
        db.delete(webauthnChallenges).where(lte(webauthnChallenges.expiresAt, now)).run()
        db.insert(webauthnChallenges).values({ challengeHash, purpose, userId, expiresAt }).run()
      })
    },

    /**
     * Consumes the challenge: true when it existed for this purpose and user (null: no user),
     * had not expired, and this call is the one that removed it. A second call finds nothing.
     */
    async consumeChallenge (challengeHash: Buffer, purpose: ChallengePurpose, userId: string | null, now: Date): Promise<boolean> {
      return write(() => db.delete(webauthnChallenges).where(and(
        eq(webauthnChallenges.challengeHash, challengeHash),
        eq(webauthnChallenges.purpose, purpose),
        userId === null ? sql`${webauthnChallenges.userId} IS NULL` : eq(webauthnChallenges.userId, userId),
        gt(webauthnChallenges.expiresAt, now)
      )).run().changes === 1)
    },

    /** Inserts the passkey; false when its credential id is registered already. */
    async insert (passkey: NewPasskey): Promise<boolean> {
      try {
        write(() => db.insert(passkeys).values(passkey).run())
        return true
      } catch (err) {
        if (isUniqueViolation(err)) return false
        throw err
      }
    },

    async listForUser (userId: string): Promise<Passkey[]> {
      return db.select().from(passkeys).where(eq(passkeys.userId, userId)).orderBy(asc(passkeys.createdAt), asc(passkeys.id)).all()
    },

    async findByCredentialId (credentialId: string): Promise<Passkey | null> {
      return db.select().from(passkeys).where(eq(passkeys.credentialId, credentialId)).get() ?? null
    },

    /**
     * Records a verified use: the counter moves from `expected` (what the verification read) to
     * `counter`. False when the row changed meanwhile (another assertion got there first, the
     * passkey was deleted): the caller refuses this one.
     */
    async recordUse (id: string, expected: number, counter: number, now: Date): Promise<boolean> {
      return write(() => db.update(passkeys).set({ counter, lastUsedAt: now })
        .where(and(eq(passkeys.id, id), eq(passkeys.counter, expected))).run().changes === 1)
    },

    async rename (id: string, userId: string, name: string): Promise<Passkey | null> {
      return write(() => db.update(passkeys).set({ name }).where(and(eq(passkeys.id, id), eq(passkeys.userId, userId))).returning().get()) ?? null
    },

    async delete (id: string, userId: string): Promise<boolean> {
      return write(() => db.delete(passkeys).where(and(eq(passkeys.id, id), eq(passkeys.userId, userId))).run().changes === 1)
    }
  }
}

export type PasskeysRepository = ReturnType<typeof createPasskeysRepository>
