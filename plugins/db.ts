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
import type Database from 'better-sqlite3'
import { openDatabase, type Db, type OpenDatabase } from '../db/client.js'
import type { GroupCommit } from '../db/durability.js'
import { runMigrations } from '../db/migrate.js'
import { createRepositories, type Repositories } from '../db/repositories/index.js'

export type { Repositories }

declare module 'fastify' {
  interface FastifyInstance {
    db: Db
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
  constructor (path: string, cause: unknown) {
    const message = cause instanceof Error ? cause.message.split('\n')[0]! : String(cause)
    const code = (cause as { code?: unknown } | null)?.code
    const reason = typeof code === 'string' && !message.startsWith(code) ? `${code}: ${message}` : message
    super(`DATABASE_URL: cannot open the database at ${path} for writing (${reason})`, { cause })
  }
}

/** A write answered after the database file has gone: mapped to 503 DATABASE_UNAVAILABLE. */
class DatabaseFileGone extends Error {
  readonly code = 'SQLITE_READONLY_DBMOVED'
  constructor () {
    super('the database file is gone from its path')
    this.name = 'DatabaseFileGone'
  }
}

export default fp(async function dbPlugin (app) {
  const { config } = app
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
