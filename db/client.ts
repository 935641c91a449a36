/**
 * Opens the SQLite database: WAL so readers never wait for the writer, a busy timeout so a
 * second process (the admin CLI, another instance) waits for the write lock instead of failing,
 * foreign keys on. `synchronous` is FULL by default (every commit survives a power cut);
 * NORMAL in WAL mode is still crash-safe for the process but may lose the last commits on a
 * power cut or OS crash, never corrupting the file.
 */
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import { drizzle, type BetterSQLite3Database } from 'drizzle-orm/better-sqlite3'
import * as schema from './schema.js'

export type Db = BetterSQLite3Database<typeof schema>

export interface DatabaseOptions {
  path: string
  synchronous?: 'FULL' | 'NORMAL'
  busyTimeoutMs?: number
  readonly?: boolean
}

export interface OpenDatabase {
  sqlite: Database.Database
  db: Db
}

export function openDatabase (options: DatabaseOptions): OpenDatabase {
  const { path } = options
  if (path !== ':memory:' && !options.readonly) mkdirSync(dirname(path), { recursive: true })
  const sqlite = new Database(path, { readonly: options.readonly ?? false })
  sqlite.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`)
  if (path !== ':memory:' && !options.readonly) sqlite.pragma('journal_mode = WAL')
  sqlite.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`)
  sqlite.pragma('foreign_keys = ON')
  return { sqlite, db: drizzle(sqlite, { schema }) }
}
