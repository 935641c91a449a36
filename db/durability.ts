/**
 * Group commit: the durability of DATABASE_SYNCHRONOUS=FULL without an fsync on the event loop.
 *
 * With SQLite's own `synchronous = FULL`, every COMMIT calls fdatasync on the WAL before it
 * returns. better-sqlite3 is synchronous, so the event loop waits for the disk on every write,
 * and meanwhile no other request is served, no argon2 result is picked up and no hash is
 * started (docs/decisions/0001-group-commit.md). Instead the connection runs with `synchronous = NORMAL` (a COMMIT
 * appends to the WAL and returns; SQLite still syncs the WAL before each checkpoint and the
 * database file after it, so the file is never corrupted) and this module makes the commits
 * durable before anyone is told about them: no response leaves the service (db plugin, onSend)
 * until an fdatasync of the WAL that began after the response's last commit has completed.
 * fdatasync runs on libuv's thread pool, the event loop serves other requests meanwhile, and one
 * call covers every commit made before it began: under load, dozens of requests share one.
 *
 * Why this is as durable as FULL: a commit's frames are in the WAL file once COMMIT returns; an
 * fdatasync of that file (any descriptor of it: Linux syncs the inode) puts them, and the file's
 * size, on stable storage. If the WAL has been checkpointed and restarted meanwhile, the frames
 * are in the database file, which the checkpoint synced before the WAL could restart. A power
 * cut before the sync completes loses only commits nobody has been answered about, exactly as
 * with FULL. The directory entry of the WAL is synced once, when this starts.
 *
 * What "a commit happened" means: SQLite's total_changes() for the connection, which counts
 * every row written by INSERT, UPDATE or DELETE. A sync records the count when it starts and,
 * once done, everything up to that count is durable. This relies on the service's rule that no
 * transaction stays open across an `await` (better-sqlite3 transactions are synchronous), so a
 * count read between two callbacks never includes uncommitted rows.
 *
 * A failed fdatasync is not retried: after an error, Linux may already have dropped the dirty
 * pages, and a later "successful" sync would vouch for data that never reached the disk (the
 * PostgreSQL "fsyncgate" lesson). The state is then unknown; every later sync fails at once
 * with the same error, and the service reports itself unready and exits (src/server.ts), so
 * that a restart recovers from what is really on disk.
 */
import fs from 'node:fs'
import { dirname } from 'node:path'
import type Database from 'better-sqlite3'

/** Raised when the WAL could not be synced; the database layer's 503 (src/public-error.ts). */
export class DurabilityError extends Error {
  readonly code = 'SQLITE_IOERR_FSYNC'
  constructor (cause: Error) {
    super('the write-ahead log could not be synced to disk', { cause })
    this.name = 'DurabilityError'
  }
}

export interface GroupCommit {
  /** Resolves once every commit made on the connection so far is on stable storage. */
  sync: () => Promise<void>
  /** True when rows were written since the last completed sync. */
  readonly pending: boolean
  /** The error that ended durability, or null. */
  readonly failure: DurabilityError | null
  /** fdatasync calls made so far (for metrics and tests). */
  readonly syncs: number
  /** Called once, when a sync fails. */
  onFailure: (listener: (err: DurabilityError) => void) => void
  /** Waits for a running sync, then closes the WAL's descriptor. Call before closing the connection. */
  close: () => Promise<void>
}

/**
 * `sqlite` must be a connection to a file database in WAL mode with `synchronous = NORMAL`;
 * `walPath` is its `-wal` file. SQLite creates that file with the first write (or the first
 * read of an existing database), so it is opened at the first sync: a sync is only needed
 * after a write. It stays the same file while the connection is open (SQLite deletes it only
 * when the last connection closes; a checkpoint truncates it in place).
 */
export function createGroupCommit (sqlite: Database.Database, walPath: string): GroupCommit {
  const changes = sqlite.prepare('SELECT total_changes()').pluck()
  const count = (): number => changes.get() as number
  let fd: number | null = null
  const walFd = (): number => {
    if (fd === null) {
      fd = fs.openSync(walPath, 'r')
      syncDirectory(dirname(walPath))
    }
    return fd
  }

  let synced = count()
  let running: Promise<void> | null = null
  let failure: DurabilityError | null = null
  let syncs = 0
  const listeners: Array<(err: DurabilityError) => void> = []

  const fail = (err: Error): DurabilityError => {
    if (failure === null) {
      failure = new DurabilityError(err)
      for (const listener of listeners) listener(failure)
    }
    return failure
  }

  const start = (): Promise<void> => {
    let target: number
    try {
      target = walFd()
    } catch (err) {
      return Promise.reject(fail(err as Error))
    }
    const upTo = count()
    syncs++
    running = new Promise<void>((resolve, reject) => {
      // Looked up at call time, so that a test can put a failing or slow fdatasync in its place.
      fs.fdatasync(target, (err) => {
        running = null
        if (err !== null) { reject(fail(err)); return }
        if (failure !== null) { reject(failure); return }
        if (upTo > synced) synced = upTo
        resolve()
      })
    })
    return running
  }

  return {
    async sync () {
      if (failure !== null) throw failure
      const target = count()
      // A sync already running may have begun before our commit: wait for it, then make sure
      // one that began after the commit has completed. Whoever finds none running starts one;
      // everyone else waiting joins it.
      while (synced < target) {
        if (failure !== null) throw failure
        await (running ?? start())
      }
    },
    get pending () { return count() > synced },
    get failure () { return failure },
    get syncs () { return syncs },
    onFailure (listener) { listeners.push(listener) },
    async close () {
      if (running !== null) await running.catch(() => {})
      if (fd !== null) fs.closeSync(fd)
      fd = null
    }
  }
}

/** fsync of a directory, so that a file created in it survives a power cut. */
function syncDirectory (dir: string): void {
  const fd = fs.openSync(dir, 'r')
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}
