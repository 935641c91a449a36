/**
 * `npm run db:migrate`: applies pending migrations to the database named by DATABASE_URL
 * (the service does the same at start).
 */
import '../require-node.js'
import { openBackend } from '../../db/open.js'
import { loadConfig, type Env } from '../config.js'
import { isMain } from './is-main.js'

/** Migrates the configured database; answers the line to print. */
export async function migrateCommand (env: Env = process.env): Promise<string> {
  const config = loadConfig(env)
  const opened = await openBackend(config)
  await opened.close()
  return `migrated ${config.databasePath}`
}

if (isMain(import.meta.url)) console.log(await migrateCommand())
