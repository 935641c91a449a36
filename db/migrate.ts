/**
 * Applies the SQL migrations that drizzle-kit generated into `db/migrations`. Drizzle records
 * applied migrations in `__drizzle_migrations` and runs each pending one in a transaction, so
 * this is idempotent and safe on an existing database file.
 *
 * Run directly (`npm run db:migrate`) it migrates the database named by DATABASE_URL.
 */
import '../src/require-node.js'
import { fileURLToPath } from 'node:url'
import { migrate } from 'drizzle-orm/better-sqlite3/migrator'
import type { Db } from './client.js'

export const migrationsFolder = fileURLToPath(new URL('./migrations', import.meta.url))

export function runMigrations (db: Db): void {
  migrate(db, { migrationsFolder })
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { loadConfig } = await import('../src/config.js')
  const { openDatabase } = await import('./client.js')
  const config = loadConfig()
  const { db, sqlite } = openDatabase({ path: config.databasePath })
  runMigrations(db)
  sqlite.close()
  console.log(`migrated ${config.databasePath}`)
}
