/**
 * The WAL checkpointer: a worker thread with its own connection to the database file, started
 * by openDatabase({ checkpoint: 'background' }) (see client.ts for why).
 *
 * Every `intervalMs` it runs a PASSIVE checkpoint: it copies committed pages from the WAL back
 * into the database file without taking the write lock and without waiting for anyone, so the
 * request thread keeps committing meanwhile. When a checkpoint has copied every frame, SQLite
 * starts the WAL over from its beginning at the next commit; a busy run is simply followed by
 * the next one. It never runs RESTART or TRUNCATE checkpoints: those wait for the writer, and the
 * writer is the event loop.
 *
 * On 'stop' it runs a last checkpoint, closes its connection and ends. A failed checkpoint is
 * reported to the parent (once per distinct message) and retried at the next tick.
 */
import { parentPort, workerData } from 'node:worker_threads'
import Database from 'better-sqlite3'

export interface CheckpointerData {
  path: string
  intervalMs: number
  synchronous: 'FULL' | 'NORMAL'
}

export type CheckpointerMessage = { type: 'error', message: string } | { type: 'stopped' }

const port = parentPort
if (port === null) throw new Error('checkpointer.ts runs as a worker thread')
const { path, intervalMs, synchronous } = workerData as CheckpointerData

const db = new Database(path)
// Checkpoints sync the WAL and the database file as the request connection's setting says.
db.pragma(`synchronous = ${synchronous === 'NORMAL' ? 'NORMAL' : 'FULL'}`)
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)')

let lastError = ''
function run (): void {
  try {
    checkpoint.get()
    lastError = ''
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err)
    if (message !== lastError) port!.postMessage({ type: 'error', message } satisfies CheckpointerMessage)
    lastError = message
  }
}

const timer = setInterval(run, intervalMs)
port.on('message', (message: unknown) => {
  if (message !== 'stop') return
  clearInterval(timer)
  run()
  db.close()
  port.postMessage({ type: 'stopped' } satisfies CheckpointerMessage)
  port.close()
})
