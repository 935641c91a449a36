/**
 * Applies the migrations drizzle-kit generated into db/migrations-pg, at every start, as
 * db/migrate.ts does on SQLite. Several instances start at once: each takes one session-level
 * advisory lock first, so one migrates while the others wait, then find nothing left to do.
 *
 * A database that already holds a migration this code does not have (a newer release migrated
 * it, and this one is an older image started against it) is refused before anything runs:
 * its schema is not the one these repositories speak.
 */
import { fileURLToPath } from 'node:url'
import { drizzle } from 'drizzle-orm/node-postgres'
import { readMigrationFiles } from 'drizzle-orm/migrator'
import { migrate } from 'drizzle-orm/node-postgres/migrator'
import type pg from 'pg'

export const pgMigrationsFolder = fileURLToPath(new URL('../migrations-pg', import.meta.url))

/** The advisory lock's key: any 64-bit constant the service uses for nothing else. */
const MIGRATION_LOCK = 0x61757468_6d6967n // 'auth' 'mig'
/** How long an instance waits for another's migrations before it gives up. */
const LOCK_WAIT_MS = 120_000

export class SchemaNewerError extends Error {
  override name = 'SchemaNewerError'
}

export async function runPgMigrations (pool: pg.Pool): Promise<void> {
  const migrations = readMigrationFiles({ migrationsFolder: pgMigrationsFolder })
  const client = await pool.connect()
  let broken: Error | undefined
  try {
    await client.query(`SET statement_timeout = ${LOCK_WAIT_MS}`)
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK.toString()])
    try {
      const table = await client.query<{ t: string | null }>("SELECT to_regclass('drizzle.__drizzle_migrations')::text AS t")
      if (table.rows[0]?.t != null) {
        const known = new Set(migrations.map((m) => m.hash))
        const applied = await client.query<{ hash: string, created_at: string }>('SELECT hash, created_at FROM drizzle.__drizzle_migrations ORDER BY created_at')
        const unknown = applied.rows.filter((r) => !known.has(r.hash))
        if (unknown.length > 0) {
          throw new SchemaNewerError(`the database's schema is newer than this release: ${unknown.length} migration(s) recorded in drizzle.__drizzle_migrations are not among the ${migrations.length} this release has; run the release that migrated it`)
        }
      }
      await migrate(drizzle(client), { migrationsFolder: pgMigrationsFolder })
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK.toString()]).catch(() => {})
    }
    await client.query('RESET statement_timeout')
  } catch (err) {
    broken = err as Error
    throw err
  } finally {
    // A connection that failed midway is not given back to the pool.
    client.release(broken)
  }
}
