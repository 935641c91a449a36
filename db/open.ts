/**
 * Opens the database a DATABASE_URL names, migrated, with its repositories: for the CLIs
 * (src/cli), which work on either backend. The service opens its own in plugins/db.ts, with
 * what only a server needs (group commit, the checkpointer, the file check).
 */
import { openDatabase, type OpenDatabase } from './client.js'
import { runMigrations } from './migrate.js'
import { openPostgres } from './pg/client.js'
import { runPgMigrations } from './pg/migrate.js'
import { createRepositories, type Repositories } from './repositories/index.js'
import { createPgRepositories } from './repositories/pg/index.js'

export interface BackendSettings {
  databaseKind: 'sqlite' | 'postgres'
  databaseUrl: string
  databasePath: string
  databaseSynchronous?: 'FULL' | 'NORMAL'
  databaseBusyTimeoutMs?: number
  databasePoolSize: number
  databaseStatementTimeoutMs: number
  databaseSsl: 'disable' | 'require' | 'verify-ca' | 'verify-full'
  databaseSslCa?: string
}

export interface OpenedBackend {
  kind: 'sqlite' | 'postgres'
  repos: Repositories
  /** The SQLite database (for what only SQLite has: the online backup); null on PostgreSQL. */
  sqlite: OpenDatabase | null
  close: () => Promise<void>
}

export async function openBackend (c: BackendSettings): Promise<OpenedBackend> {
  if (c.databaseKind === 'postgres') {
    // A tool needs few connections.
    const { db, pool } = openPostgres({
      url: c.databaseUrl,
      poolSize: Math.min(c.databasePoolSize, 2),
      statementTimeoutMs: c.databaseStatementTimeoutMs,
      ssl: c.databaseSsl,
      ...(c.databaseSslCa === undefined ? {} : { sslCa: c.databaseSslCa })
    })
    try {
      await runPgMigrations(pool)
    } catch (err) {
      await pool.end().catch(() => {})
      throw err
    }
    return { kind: 'postgres', repos: createPgRepositories(db), sqlite: null, close: async () => { await pool.end() } }
  }
  const opened = openDatabase({
    path: c.databasePath,
    ...(c.databaseSynchronous === undefined ? {} : { synchronous: c.databaseSynchronous }),
    ...(c.databaseBusyTimeoutMs === undefined ? {} : { busyTimeoutMs: c.databaseBusyTimeoutMs })
  })
  try {
    runMigrations(opened.db)
  } catch (err) {
    opened.sqlite.close()
    throw err
  }
  return { kind: 'sqlite', repos: createRepositories(opened.db), sqlite: opened, close: async () => { opened.sqlite.close() } }
}
