/**
 * Opens the database named by DATABASE_URL, applies pending migrations, and exposes the
 * repositories. Nothing else in the service holds a database handle.
 *
 * With DATABASE_SYNCHRONOUS=FULL (the default) on a file, commits are made durable by group
 * commit (db/durability.ts): an onSend hook holds every response until the commits made
 * before it are on disk. Error responses of 500 and above wait for nothing: they promise
 * nothing, and the one for a failed sync must be able to leave.
 *
 * The database file deleted or replaced under the running service (an `rm -rf` of the data
 * directory, a detached volume): SQLite would go on committing into the unlinked file. A check
 * every FILE_CHECK_MS, at /ready, and (with group commit) before any write is acknowledged compares the path with
 * the open file; once it differs the connection turns query-only for good, so every write is
 * refused as SQLITE_READONLY (503 DATABASE_UNAVAILABLE with Retry-After), /ready answers 503,
 * and the process stays up for an operator to restore the directory and restart it.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type Database from 'better-sqlite3'
import { openDatabase, type Db, type OpenDatabase } from '../db/client.js'
import type { GroupCommit } from '../db/durability.js'
import { runMigrations } from '../db/migrate.js'
import { createRepositories, type Repositories } from '../db/repositories/index.js'

export type { Repositories }

/** What the service asks of its database whichever backend DATABASE_URL chose. */
export interface DatabaseHandle {
  kind: 'sqlite' | 'postgres'
  /** Resolves when the database answers a query; rejects when it does not. */
  ping: () => Promise<void>
  /** True while a write transaction of this process is open on the connection (SQLite only; false on PostgreSQL, whose transactions are per connection). */
  inTransaction: () => boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The backend-neutral handle (readiness, the audit recorder). */
    database: DatabaseHandle
    /** SQLite only: Drizzle over the connection (absent on PostgreSQL). */
    db: Db
    /** SQLite only: the better-sqlite3 connection (absent on PostgreSQL). */
    sqlite: Database.Database
    repos: Repositories
    /** Group commit (DATABASE_SYNCHRONOUS=FULL on a file), or null. */
    durability: GroupCommit | null
    /** Checks now whether the database file is still at its path; true once it has gone (for good). */
    databaseFileLost: () => boolean
  }
}

const FILE_CHECK_MS = 2000

const OPEN_FAILURE = /^SQLITE_(READONLY|CANTOPEN|IOERR|FULL|PERM|NOTADB|CORRUPT|AUTH)/

/**
 * The database named by DATABASE_URL cannot be opened for writing: the server reports it in
 * one line and exits with EX_CONFIG (src/server.ts), as for any other configuration error.
 */
export class DatabaseOpenError extends Error {
  override name = 'DatabaseOpenError'
  constructor (path: string, cause: unknown, what = `cannot open the database at ${path} for writing`) {
    super(`DATABASE_URL: ${what} (${reasonOf(cause)})`, { cause })
  }
}

function reasonOf (cause: unknown): string {
  const message = cause instanceof Error ? (cause.message.split('\n')[0] ?? '') : String(cause)
  const code = (cause as { code?: unknown } | null)?.code
  return typeof code === 'string' && !message.startsWith(code) ? `${code}: ${message}` : message
}

/** PostgreSQL's errors that mean "not this server, user or database" rather than a fault of ours. */
const PG_LOGIN_REFUSED = new Set(['28P01', '28000', '3D000'])

/** A write answered after the database file has gone: mapped to 503 DATABASE_UNAVAILABLE. */
class DatabaseFileGone extends Error {
  readonly code = 'SQLITE_READONLY_DBMOVED'
  constructor () {
    super('the database file is gone from its path')
    this.name = 'DatabaseFileGone'
  }
}

/**
 * PostgreSQL: the pool, a first connection (bounded: connecting times out after a few seconds),
 * the migrations under their advisory lock. A server that cannot be reached, a login it
 * refuses, or a schema newer than this release stop the start with a DatabaseOpenError (one
 * line naming DATABASE_URL, exit code 78). The SQLite-only parts (group commit, checkpointer,
 * file check) have no counterpart here.
 */
async function openPostgresBackend (app: FastifyInstance): Promise<void> {
  const { config } = app
  // Loaded only here: a service on SQLite never pays for the PostgreSQL driver at start.
  const [{ openPostgres }, { runPgMigrations, SchemaNewerError }, { createPgRepositories }] = await Promise.all([import('../db/pg/client.js'), import('../db/pg/migrate.js'), import('../db/repositories/pg/index.js')])
  const { db, pool } = openPostgres({
    url: config.databaseUrl,
    poolSize: config.databasePoolSize,
    statementTimeoutMs: config.databaseStatementTimeoutMs,
    ssl: config.databaseSsl,
    ...(config.databaseSslCa === undefined ? {} : { sslCa: config.databaseSslCa }),
    onIdleError: (err) => { app.log.warn({ err: { message: err.message, code: (err as { code?: unknown }).code } }, 'PostgreSQL dropped an idle connection') }
  })
  const where = config.databasePath
  try {
    const client = await pool.connect()
    client.release()
  } catch (err) {
    await pool.end().catch(() => {})
    const code = (err as { code?: unknown }).code
    throw new DatabaseOpenError(where, err, typeof code === 'string' && PG_LOGIN_REFUSED.has(code)
      ? `PostgreSQL at ${where} refused the connection; check the user, password and database name`
      : `cannot connect to PostgreSQL at ${where}; check that the server runs and is reachable`)
  }
  try {
    await runPgMigrations(pool)
  } catch (err) {
    await pool.end().catch(() => {})
    if (err instanceof SchemaNewerError) throw new DatabaseOpenError(where, err, `refusing the database at ${where}`)
    throw err
  }
  app.decorate('database', {
    kind: 'postgres',
    ping: async () => { await pool.query('SELECT 1') },
    inTransaction: () => false
  } satisfies DatabaseHandle)
  app.decorate('durability', null)
  app.decorate('databaseFileLost', () => false)
  app.decorate('repos', createPgRepositories(db))
  app.addHook('onClose', async () => { await pool.end() })
}

export default fp(async function dbPlugin (app) {
  const { config } = app
  if (config.databaseKind === 'postgres') {
    await openPostgresBackend(app)
    return
  }
  let opened: OpenDatabase
  try {
    opened = openDatabase({
      path: config.databasePath,
      synchronous: config.databaseSynchronous,
      busyTimeoutMs: config.databaseBusyTimeoutMs,
      checkpoint: config.databaseCheckpoint,
      groupCommit: true,
      onCheckpointError: (message) => { app.log.error({ message }, 'WAL checkpoint failed') }
    })
  } catch (err) {
    throw new DatabaseOpenError(config.databasePath, err)
  }
  const { db, sqlite, durability } = opened
  try {
    runMigrations(db)
  } catch (err) {
    await opened.close()
    // A file that cannot be written or is no database is a setting to fix; anything else
    // (a migration's own fault) stays a crash with its stack.
    if (OPEN_FAILURE.test(String((err as { code?: unknown }).code))) throw new DatabaseOpenError(config.databasePath, err)
    throw err
  }
  app.decorate('db', db)
  app.decorate('sqlite', sqlite)
  app.decorate('database', {
    kind: 'sqlite',
    ping: async () => { sqlite.prepare('SELECT 1').get() },
    inTransaction: () => sqlite.inTransaction
  } satisfies DatabaseHandle)
  app.decorate('durability', durability)

  let lost = false
  const fileLost = (): boolean => {
    if (lost || !opened.fileGone()) return lost
    lost = true
    if (sqlite.open) sqlite.pragma('query_only = 1')
    app.log.fatal({ path: config.databasePath }, 'the database file is gone (deleted or replaced while running): every write is refused; restore the data directory and restart')
    return true
  }
  app.decorate('databaseFileLost', fileLost)
  const fileCheck = setInterval(fileLost, FILE_CHECK_MS).unref()

  if (durability !== null) {
    durability.onFailure((err) => {
      app.log.fatal({ err }, 'database durability lost: no write is acknowledged until the service restarts')
    })
    app.addHook('onSend', (_request, reply, payload, done) => {
      if (reply.statusCode >= 500 || !durability.pending) { done(null, payload); return }
      // A commit that went into a file no longer at its path is not acknowledged.
      if (fileLost()) { done(new DatabaseFileGone()); return }
      durability.sync().then(() => { done(null, payload) }, (err: Error) => { done(err) })
    })
  }
  app.decorate('repos', createRepositories(db))
  app.addHook('onClose', async () => {
    clearInterval(fileCheck)
    await opened.close()
  })
}, { name: 'db', fastify: '5.x', dependencies: ['config'] })
