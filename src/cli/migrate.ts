/**
 * `npm run db:migrate`: applies pending migrations to the database named by DATABASE_URL
 * (the service does the same at start).
 */
import '../require-node.js'
import { openDatabase } from '../../db/client.js'
import { runMigrations } from '../../db/migrate.js'
import { loadConfig, type Env } from '../config.js'
import { isMain } from './is-main.js'

/** Migrates the configured database; answers the line to print. */
export function migrateCommand (env: Env = process.env): string {
  const config = loadConfig(env)
  const { db, sqlite } = openDatabase({ path: config.databasePath })
  try {
    runMigrations(db)
  } finally {
    sqlite.close()
  }
  return `migrated ${config.databasePath}`
}

if (isMain(import.meta.url)) console.log(migrateCommand())
