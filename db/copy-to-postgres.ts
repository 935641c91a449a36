/**
 * Copies a SQLite database into an empty PostgreSQL one (`admin database copy`), row for row and
 * id for id, so that a deployment moves to PostgreSQL without logging anyone out: the same
 * users (password hashes, fold and skeleton keys, security stamps), the same sessions with their
 * whole refresh-token chains (spent tokens and successor links, so reuse is still detected), the
 * same signing keys (sealed as they are: the target service needs the same KEY_ENCRYPTION_KEY),
 * the same server secrets (the refresh-token key, without which no token's selector opens) and
 * the audit log.
 *
 * Invariants:
 * - The source is only read, in one read transaction: one consistent snapshot even while a
 *   service writes to it. Nothing is written to it, not even a migration.
 * - Both databases must be at this release's schema: the source with every SQLite migration of
 *   this release and no other, the target with every PostgreSQL migration and no other.
 * - The target is written in ONE transaction, after a lock that keeps every writer out and a
 *   check that every copied table is empty: all rows or none. Identity columns are moved past
 *   the copied ids, so the next refresh token or audit event gets a new id.
 * - Leases are not copied: a lease names a process of the old deployment and expires within a
 *   minute; the new deployment's instances take their own.
 */
import { asc, gt, type SQL } from 'drizzle-orm'
import type { SQLiteColumn, SQLiteTable } from 'drizzle-orm/sqlite-core'
import type { PgTable } from 'drizzle-orm/pg-core'
import { readMigrationFiles } from 'drizzle-orm/migrator'
import { drizzle } from 'drizzle-orm/node-postgres'
import Database from 'better-sqlite3'
import { drizzle as drizzleSqlite } from 'drizzle-orm/better-sqlite3'
import type pg from 'pg'
import { migrationsFolder } from './migrate.js'
import { pgMigrationsFolder } from './pg/migrate.js'
import * as pgSchema from './pg/schema.js'
import * as schema from './schema.js'
import { usernameFold, usernameSkeleton } from './username-keys.js'

/** A refusal the caller reports as one line; `side` says which database it is about. */
export class CopyRefused extends Error {
  override name = 'CopyRefused'
  constructor (readonly side: 'from' | 'to', message: string) { super(message) }
}

interface CopiedTable {
  name: string
  from: SQLiteTable
  /** The primary key (its field in a row), walked in order in batches. */
  key: SQLiteColumn
  field: string
  to: PgTable
  /** The identity column to move past the copied ids. */
  identity?: string
}

/**
 * Every table of the schema but those in SKIPPED_TABLES, parents before children (sessions name
 * their user by a foreign key). test/db/copy-to-postgres.test.ts checks that this list and
 * SKIPPED_TABLES are every table the PostgreSQL schema has, so a new table cannot be left out unseen.
 */
export const COPIED_TABLES: readonly CopiedTable[] = [
  { name: 'users', from: schema.users, key: schema.users.id, field: 'id', to: pgSchema.users },
  { name: 'sessions', from: schema.sessions, key: schema.sessions.id, field: 'id', to: pgSchema.sessions },
  { name: 'refresh_tokens', from: schema.refreshTokens, key: schema.refreshTokens.id, field: 'id', to: pgSchema.refreshTokens, identity: 'id' },
  { name: 'signing_keys', from: schema.signingKeys, key: schema.signingKeys.kid, field: 'kid', to: pgSchema.signingKeys },
  { name: 'server_secrets', from: schema.serverSecrets, key: schema.serverSecrets.name, field: 'name', to: pgSchema.serverSecrets },
  { name: 'audit_events', from: schema.auditEvents, key: schema.auditEvents.id, field: 'id', to: pgSchema.auditEvents, identity: 'id' },
  { name: 'passkeys', from: schema.passkeys, key: schema.passkeys.id, field: 'id', to: pgSchema.passkeys },
  { name: 'totp_factors', from: schema.totpFactors, key: schema.totpFactors.userId, field: 'userId', to: pgSchema.totpFactors },
  { name: 'recovery_codes', from: schema.recoveryCodes, key: schema.recoveryCodes.id, field: 'id', to: pgSchema.recoveryCodes, identity: 'id' },
  // Pending mail moves with the tokens its links carry; sent rows keep their metadata until
  // housekeeping, and dead letters stay listable by `admin mail dead`. A claim held by the old
  // deployment runs out and is taken again by the new one.
  { name: 'mail_outbox', from: schema.mailOutbox, key: schema.mailOutbox.id, field: 'id', to: pgSchema.mailOutbox, identity: 'id' },
  // Links already mailed keep working after the move.
  { name: 'account_tokens', from: schema.accountTokens, key: schema.accountTokens.tokenHash, field: 'tokenHash', to: pgSchema.accountTokens }
]

/** Tables deliberately not copied, and why. */
export const SKIPPED_TABLES: Readonly<Record<string, string>> = {
  leases: 'a lease names a process of the old deployment and expires on its own',
  webauthn_challenges: 'a challenge lives five minutes: a ceremony under way while the database moves starts again',
  mfa_challenges: 'a login waiting for its second factor lives five minutes: it logs in again'
}

/** Rows per INSERT: well below PostgreSQL's 65,535 parameters for the widest tables (users, mail_outbox: 15 columns). */
const BATCH = 1000

export interface CopyResult {
  /** Rows copied, per table, in copy order. */
  counts: Record<string, number>
}

function migrationHashes (folder: string): string[] {
  return readMigrationFiles({ migrationsFolder: folder }).map((m) => m.hash)
}

/** How `applied` differs from this release's migrations: null when it is the same set. */
function schemaMismatch (applied: string[], release: string[]): string | null {
  const known = new Set(release)
  const have = new Set(applied)
  const unknown = applied.filter((h) => !known.has(h)).length
  const missing = release.filter((h) => !have.has(h)).length
  if (unknown > 0) return `its schema is newer than this release (${unknown} migration(s) this release does not have)`
  if (missing > 0) return `it is not migrated to this release's schema (${release.length - missing} of ${release.length} migrations applied)`
  return null
}

/**
 * Opens the SQLite source for reading (never creating it) and checks its schema. The
 * connection is read-write only so that SQLite can use the WAL index of a running service;
 * nothing is written.
 */
export function openSqliteSource (path: string): Database.Database {
  let sqlite: Database.Database
  try {
    sqlite = new Database(path, { fileMustExist: true })
  } catch (err) {
    throw new CopyRefused('from', `cannot open the SQLite database ${path} (${(err as Error).message})`)
  }
  try {
    sqlite.pragma('busy_timeout = 5000')
    const recorded = sqlite.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '__drizzle_migrations'").get() !== undefined
    const applied = recorded ? sqlite.prepare('SELECT hash FROM __drizzle_migrations').pluck().all() as string[] : []
    const mismatch = schemaMismatch(applied, migrationHashes(migrationsFolder))
    if (mismatch !== null) {
      throw new CopyRefused('from', `refusing the SQLite database ${path}: ${mismatch}; start this release of the service on it once (or run npm run db:migrate with DATABASE_URL=file:${path}), then copy`)
    }
    return sqlite
  } catch (err) {
    sqlite.close()
    throw err
  }
}

/** Checks that the target holds exactly this release's PostgreSQL migrations. */
async function checkTargetSchema (client: pg.PoolClient, shown: string): Promise<void> {
  const table = await client.query<{ t: string | null }>("SELECT to_regclass('drizzle.__drizzle_migrations')::text AS t")
  const applied = table.rows[0]?.t == null ? [] : (await client.query<{ hash: string }>('SELECT hash FROM drizzle.__drizzle_migrations')).rows.map((r) => r.hash)
  const mismatch = schemaMismatch(applied, migrationHashes(pgMigrationsFolder))
  if (mismatch !== null) {
    throw new CopyRefused('to', `refusing the PostgreSQL database ${shown}: ${mismatch}; migrate it first with DATABASE_URL=<the target URL> npm run db:migrate (not by starting the service, which creates a signing key and secrets), then copy`)
  }
}

/**
 * Copies every row of `sqlite` (opened by openSqliteSource) into the database behind `pool`.
 * `shown` is the target URL without its password, for messages. Throws CopyRefused for a
 * target that is not migrated or not empty; any other error rolls the whole copy back.
 */
export async function copySqliteToPostgres (sqlite: Database.Database, pool: pg.Pool, shown: string): Promise<CopyResult> {
  const source = drizzleSqlite(sqlite, { schema })
  const client = await pool.connect()
  let broken: Error | undefined
  // One read transaction over every table: the snapshot starts at the first read and holds
  // until COMMIT, however long the PostgreSQL side takes.
  sqlite.prepare('BEGIN DEFERRED').run()
  try {
    await checkTargetSchema(client, shown)
    await client.query('BEGIN')
    try {
      // Keeps out every writer (a service started on the target too early) until COMMIT; readers may read.
      await client.query(`LOCK TABLE ${COPIED_TABLES.map((t) => t.name).join(', ')} IN EXCLUSIVE MODE`)
      const occupied: string[] = []
      for (const t of COPIED_TABLES) {
        const n = Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${t.name}`)).rows[0]!.n)
        if (n > 0) occupied.push(`${t.name}: ${n}`)
      }
      if (occupied.length > 0) {
        throw new CopyRefused('to', `refusing the PostgreSQL database ${shown}: it is not empty (${occupied.join(', ')} row(s)); copy into a new database that was only migrated`)
      }
      const target = drizzle(client, { schema: pgSchema })
      const counts: Record<string, number> = {}
      for (const t of COPIED_TABLES) {
        let copied = 0
        let last: unknown
        for (;;) {
          const where: SQL | undefined = last === undefined ? undefined : gt(t.key, last)
          const rows = source.select().from(t.from).where(where).orderBy(asc(t.key)).limit(BATCH).all() as Array<Record<string, unknown>>
          if (rows.length === 0) break
          // Fold keys the source never filled in (a database from before them): the
          // PostgreSQL start does not compute them, and login finds names by them.
          if (t.name === 'users') {
            for (const row of rows) {
              row.usernameFold ??= usernameFold(row.username as string)
              row.usernameSkeleton ??= usernameSkeleton(row.username as string)
            }
          }
          try {
            await target.insert(t.to).values(rows as never)
          } catch (err) {
            // Drizzle's error repeats the statement's parameters (password hashes, token
            // digests, sealed keys): only PostgreSQL's own message is passed on.
            const cause = (err as { cause?: unknown }).cause
            const message = (cause instanceof Error ? cause : err as Error).message
            throw new Error(`copying ${t.name} failed; nothing was copied (the transaction was rolled back): ${message}`)
          }
          copied += rows.length
          last = rows.at(-1)![t.field]
        }
        if (t.identity !== undefined) {
          // Past the largest copied id (or back at 1 for an empty table): new rows never take a copied id.
          await client.query(`SELECT setval(pg_get_serial_sequence('${t.name}', '${t.identity}'), coalesce((SELECT max(${t.identity}) FROM ${t.name}), 1), (SELECT count(*) > 0 FROM ${t.name}))`)
        }
        counts[t.name] = copied
      }
      await client.query('COMMIT')
      return { counts }
    } catch (err) {
      await client.query('ROLLBACK').catch((e: unknown) => { broken = e as Error })
      throw err
    }
  } finally {
    if (sqlite.inTransaction) sqlite.prepare('COMMIT').run()
    // A connection whose state is unknown is not given back to the pool.
    client.release(broken)
  }
}
