/**
 * Opens the SQLite database: WAL so readers never wait for the writer, a busy timeout so a
 * second process (the admin CLI, another instance) waits for the write lock instead of failing,
 * foreign keys on. Durability is FULL by default (every acknowledged commit survives a power
 * cut): for the server through group commit (durability.ts: SQLite at synchronous=NORMAL, and
 * the WAL synced off the event loop before anyone is answered), for short-lived tools through
 * SQLite's own synchronous=FULL. NORMAL in WAL mode is still crash-safe for the process but may
 * lose the last commits on a power cut or OS crash, never corrupting the file.
 *
 * Checkpoints. In WAL mode every commit appends pages to the -wal file; a checkpoint copies them
 * back into the database file. SQLite does it by itself ('auto') inside the commit that takes
 * the WAL past 1,000 pages, so now and then one request pays, on the event loop, for copying
 * and syncing every page written since. With 'background' a worker thread with its own
 * connection checkpoints every CHECKPOINT_INTERVAL_MS instead (checkpointer.ts), and requests
 * only append (the service's default; why: docs/decisions/0002-background-checkpoints.md).
 * Nothing changes for durability: a commit is acknowledged once it is in the WAL and synced
 * there, whoever copies it later, and after a crash SQLite replays the WAL. The WAL stays
 * bounded: it restarts from its beginning once a checkpoint has caught up,
 * `journal_size_limit` truncates the file when it does, and if the worker ever falls behind or
 * fails, SQLite's own automatic checkpoint still runs at BACKSTOP_PAGES as a backstop.
 */
import { mkdirSync, statSync } from 'node:fs'
import { dirname } from 'node:path'
import { Worker } from 'node:worker_threads'
import Database from 'better-sqlite3'
import { drizzle, type BetterSQLite3Database } from 'drizzle-orm/better-sqlite3'
import type { CheckpointerData, CheckpointerMessage } from './checkpointer.js'
import { createGroupCommit, type GroupCommit } from './durability.js'
import * as schema from './schema.js'

/** Drizzle over the connection; `$client` is the better-sqlite3 connection itself. */
export type Db = BetterSQLite3Database<typeof schema> & { $client: Database.Database }

export type CheckpointMode = 'auto' | 'background'

export interface DatabaseOptions {
  path: string
  synchronous?: 'FULL' | 'NORMAL'
  busyTimeoutMs?: number
  readonly?: boolean
  /** Who checkpoints the WAL (see above). Default 'auto'; only a writable file database has a WAL. */
  checkpoint?: CheckpointMode
  /** Called when a background checkpoint fails (it is retried at the next tick). */
  onCheckpointError?: (message: string) => void
  /**
   * FULL through group commit (durability.ts): SQLite runs at synchronous=NORMAL and the
   * caller awaits `durability.sync()` before it tells anyone about a commit. For servers; a
   * short-lived tool (the admin CLI) keeps SQLite's own FULL, which needs no cooperation.
   */
  groupCommit?: boolean
}

export interface OpenDatabase {
  sqlite: Database.Database
  db: Db
  /** The group commit, when FULL is kept that way (see `groupCommit`); null otherwise. */
  durability: GroupCommit | null
  /**
   * True when the path no longer names the file the connection has open (deleted, or replaced
   * by another file). SQLite in WAL mode goes on writing into an unlinked file without a word;
   * a restart would then start from whatever is at the path, or from nothing.
   */
  fileGone: () => boolean
  /** Stops the checkpointer (after a last checkpoint), then closes the connection. */
  close: () => Promise<void>
}

const CHECKPOINT_INTERVAL_MS = 200
/** SQLite's own automatic checkpoint, kept as a backstop when the worker checkpoints. */
const BACKSTOP_PAGES = 10_000
const JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024

export function openDatabase (options: DatabaseOptions): OpenDatabase {
  const { path } = options
  const synchronous = options.synchronous ?? 'FULL'
  const writableFile = path !== ':memory:' && !options.readonly
  if (writableFile) mkdirSync(dirname(path), { recursive: true })
  const sqlite = new Database(path, { readonly: options.readonly ?? false })
  sqlite.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`)
  if (writableFile) {
    sqlite.pragma('journal_mode = WAL')
    sqlite.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`)
  }
  const groupCommit = writableFile && synchronous === 'FULL' && options.groupCommit === true
  sqlite.pragma(`synchronous = ${groupCommit ? 'NORMAL' : synchronous}`)
  sqlite.pragma('foreign_keys = ON')
  const durability = groupCommit ? createGroupCommit(sqlite, `${path}-wal`) : null
  // The file as opened: the same device and inode must stay at the path.
  const opened = writableFile ? statSync(path) : null

  const worker = writableFile && options.checkpoint === 'background'
    ? startCheckpointer(sqlite, { path, intervalMs: CHECKPOINT_INTERVAL_MS, synchronous }, options.onCheckpointError)
    : null

  return {
    sqlite,
    db: drizzle(sqlite, { schema }),
    durability,
    fileGone () {
      if (opened === null) return false
      try {
        const now = statSync(path)
        return now.ino !== opened.ino || now.dev !== opened.dev
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        return code === 'ENOENT' || code === 'ENOTDIR'
      }
    },
    async close () {
      if (worker !== null) await worker.stop()
      if (durability !== null) await durability.close()
      if (sqlite.open) sqlite.close()
    }
  }
}

function startCheckpointer (sqlite: Database.Database, data: CheckpointerData, onError?: (message: string) => void): { stop: () => Promise<void> } {
  // Until the worker runs, and for good if it cannot: SQLite's own checkpoint at 1,000 pages.
  const fallBack = (message: string): void => {
    if (sqlite.open) sqlite.pragma('wal_autocheckpoint = 1000')
    onError?.(message)
  }
  // From the sources (tsx, tests) the worker is the .ts file, which Node runs as is (type
  // stripping); from dist/ it is the compiled .js. The worker inherits the parent's flags, but
  // not `--input-type` (`node --input-type=module -e ...`), which would stop it at birth.
  const file = import.meta.url.endsWith('.ts') ? './checkpointer.ts' : './checkpointer.js'
  const execArgv = process.execArgv.some((arg) => arg.startsWith('--input-type'))
    ? process.execArgv.filter((arg) => !arg.startsWith('--input-type'))
    : undefined
  let worker: Worker
  try {
    worker = new Worker(new URL(file, import.meta.url), { workerData: data, ...(execArgv === undefined ? {} : { execArgv }) })
  } catch (err) {
    fallBack(`checkpointer not started: ${(err as Error).message}`)
    return { stop: async () => {} }
  }
  sqlite.pragma(`wal_autocheckpoint = ${BACKSTOP_PAGES}`)
  // The thread must never keep the process alive on its own.
  worker.unref()
  let failed = false
  worker.on('message', (message: CheckpointerMessage) => {
    if (message.type === 'error') onError?.(message.message)
  })
  worker.on('error', (err) => {
    failed = true
    fallBack(`checkpointer stopped: ${err.message}`)
  })
  const exited = new Promise<void>((resolve) => { worker.once('exit', () => { resolve() }) })
  return {
    async stop () {
      if (!failed) worker.postMessage('stop')
      const timeout = setTimeout(() => { void worker.terminate() }, 5000)
      await exited
      clearTimeout(timeout)
    }
  }
}
