/**
 * Applies the SQL migrations that drizzle-kit generated into `db/migrations`. Drizzle records
 * applied migrations in `__drizzle_migrations` and runs each pending one in a transaction, so
 * this is idempotent and safe on an existing database file.
 *
 * `npm run db:migrate` (src/cli/migrate.ts) runs it on the database named by DATABASE_URL.
 */
import { fileURLToPath } from 'node:url'
import { migrate } from 'drizzle-orm/better-sqlite3/migrator'
import { usernameFold, usernameSkeleton } from './username-keys.js'
import type { Db } from './client.js'

export const migrationsFolder = fileURLToPath(new URL('./migrations', import.meta.url))

export function runMigrations (db: Db): void {
  migrate(db, { migrationsFolder })
  backfillUsernameKeys(db)
}

/**
 * Fills in the fold key and skeleton of rows that have none (rows from before the columns
 * existed: NFKC and case folding cannot be computed in SQL), in one transaction, so a start
 * either fills every row or none. Names that now collide are kept as they are, each still
 * logging in with the name it registered (users repository, `findByUsername`); `admin
 * usernames collisions` lists them. Returns how many rows it filled.
 */
export function backfillUsernameKeys (db: Db): number {
  const sqlite = db.$client
  const pending = sqlite.prepare('SELECT id, username FROM users WHERE username_fold IS NULL OR username_skeleton IS NULL')
  const update = sqlite.prepare('UPDATE users SET username_fold = ?, username_skeleton = ? WHERE id = ?')
  // Nothing to do on every start but the first after the upgrade: no write lock taken then.
  if (sqlite.prepare('SELECT 1 FROM users WHERE username_fold IS NULL OR username_skeleton IS NULL LIMIT 1').get() === undefined) return 0
  return sqlite.transaction((): number => {
    const rows = pending.all() as Array<{ id: string, username: string }>
    for (const row of rows) update.run(usernameFold(row.username), usernameSkeleton(row.username), row.id)
    return rows.length
  }).immediate()
}
