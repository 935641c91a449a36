/**
 * Deleting an account (src/auth/account-deletion.ts), in one transaction:
 * - the user row is deleted; its sessions and account tokens go with it (ON DELETE CASCADE).
 *   Refresh tokens are not: the table has no index by session (db/schema.ts), so finding them
 *   would scan it while holding the write lock. They hold no personal data (a digest, a session
 *   id, times), a token whose session is gone is refused as unknown, and housekeeping deletes
 *   them when they expire;
 * - the account's earlier audit events keep their type, time and ids but lose what identifies
 *   the person: client address, user agent, and the detail keys in `PERSONAL_DETAIL_KEYS`;
 * - `alongside(email)` (synchronous) runs last: it writes the tombstone event and enqueues the
 *   notice to the address the account had, so they commit with the deletion or not at all.
 *
 * With `epoch`, the deletion happens only while the account's security stamp is still the one
 * read with the password that was checked: a password change, logout-all or disable in between
 * withdraws that proof.
 */
import { and, eq, sql } from 'drizzle-orm'
import type { Db } from '../client.js'
import { auditEvents, users } from '../schema.js'

/** Keys of an audit event's detail that name a person (register, user_created, address changes). */
export const PERSONAL_DETAIL_KEYS = ['username', 'email', 'previousEmail'] as const

export interface AccountDeletion {
  userId: string
  /** The security stamp the caller checked the password against; null for an administrator. */
  epoch: number | null
  now: Date
}

export interface AccountDeletionRepository {
  /** Deletes the account; answers the address it had, or null when nothing was deleted. */
  delete: (d: AccountDeletion, alongside: (email: string | null) => void) => Promise<{ deleted: true, email: string | null } | { deleted: false }>
}

export function createAccountDeletionRepository (db: Db): AccountDeletionRepository {
  const paths = PERSONAL_DETAIL_KEYS.map((k) => `'$.${k}'`).join(', ')
  return {
    async delete (d, alongside) {
      return db.transaction((tx) => {
        const where = d.epoch === null ? eq(users.id, d.userId) : and(eq(users.id, d.userId), eq(users.credentialEpoch, d.epoch))
        const [gone] = tx.delete(users).where(where).returning({ email: users.email }).all()
        if (gone === undefined) return { deleted: false as const }
        tx.update(auditEvents)
          .set({ ip: null, userAgent: null, detail: sql.raw(`CASE WHEN detail IS NULL THEN NULL ELSE json_remove(detail, ${paths}) END`) })
          .where(eq(auditEvents.userId, d.userId)).run()
        alongside(gone.email)
        return { deleted: true as const, email: gone.email }
      }, { behavior: 'immediate' })
    }
  }
}
