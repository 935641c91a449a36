/**
 * Named leases on PostgreSQL (db/repositories/leases.ts). Taking one is one INSERT … ON
 * CONFLICT DO UPDATE … WHERE: PostgreSQL locks the row for the conflict's update, so of two
 * instances that try at once exactly one changes it and sees a row count of 1.
 */
import { sql } from 'drizzle-orm'
import type { PgDb } from '../../pg/client.js'
import { leases } from '../../pg/schema.js'

export function createPgLeasesRepository (db: PgDb) {
  return {
    async acquire (name: string, holder: string, now: Date, until: Date): Promise<boolean> {
      const r = await db.insert(leases).values({ name, holder, expiresAt: until })
        .onConflictDoUpdate({
          target: leases.name,
          set: { holder, expiresAt: until },
          setWhere: sql`${leases.expiresAt} <= ${now} OR ${leases.holder} = ${holder}`
        })
      return (r.rowCount ?? 0) > 0
    },

    async renew (name: string, holder: string, until: Date): Promise<void> {
      await db.insert(leases).values({ name, holder, expiresAt: until })
        .onConflictDoUpdate({ target: leases.name, set: { holder, expiresAt: until } })
    },

    async countOthers (prefix: string, holder: string, now: Date): Promise<number> {
      const [row] = await db.select({ n: sql<number>`count(*)::int` }).from(leases)
        .where(sql`left(${leases.name}, ${prefix.length}) = ${prefix} AND ${leases.holder} <> ${holder} AND ${leases.expiresAt} > ${now}`)
      return row?.n ?? 0
    },

    async release (name: string, holder: string): Promise<void> {
      await db.delete(leases).where(sql`${leases.name} = ${name} AND ${leases.holder} = ${holder}`)
    }
  }
}
