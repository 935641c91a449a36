/**
 * Named leases: a row per job saying which process holds it until when. Taking a lease is one
 * statement that succeeds only when the lease is free, expired, or already ours, so two
 * instances sharing the database never both run the same periodic job.
 */
import { sql } from 'drizzle-orm'
import type { Db } from '../client.js'
import { leases } from '../schema.js'

export function createLeasesRepository (db: Db) {
  return {
    /** True when `holder` now holds `name` until `until`. */
    async acquire (name: string, holder: string, now: Date, until: Date): Promise<boolean> {
      return db.insert(leases).values({ name, holder, expiresAt: until })
        .onConflictDoUpdate({
          target: leases.name,
          set: { holder, expiresAt: until },
          setWhere: sql`${leases.expiresAt} <= ${now.getTime()} OR ${leases.holder} = ${holder}`
        })
        .run().changes > 0
    },

    /** Takes or extends `name` for `holder` whoever held it (a process's own heartbeat row). */
    async renew (name: string, holder: string, until: Date): Promise<void> {
      db.insert(leases).values({ name, holder, expiresAt: until })
        .onConflictDoUpdate({ target: leases.name, set: { holder, expiresAt: until } })
        .run()
    },

    /** How many unexpired leases whose name starts with `prefix` are held by others than `holder`. */
    async countOthers (prefix: string, holder: string, now: Date): Promise<number> {
      return db.select({ n: sql<number>`count(*)` }).from(leases)
        .where(sql`substr(${leases.name}, 1, ${prefix.length}) = ${prefix} AND ${leases.holder} <> ${holder} AND ${leases.expiresAt} > ${now.getTime()}`)
        .get()?.n ?? 0
    },

    async release (name: string, holder: string): Promise<void> {
      db.delete(leases).where(sql`${leases.name} = ${name} AND ${leases.holder} = ${holder}`).run()
    }
  }
}

export type LeasesRepository = ReturnType<typeof createLeasesRepository>
