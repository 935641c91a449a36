/**
 * The background WAL checkpointer (db/client.ts, db/checkpointer.ts): it does checkpoint, it
 * stops cleanly, and a process killed while it runs loses no acknowledged commit.
 */
import { spawn } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import t from 'tap'
import { openDatabase } from '../../db/client.js'

const HERE = dirname(fileURLToPath(import.meta.url))

async function until (condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const started = Date.now()
  while (!condition()) {
    if (Date.now() - started > timeoutMs) return false
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  return true
}

t.test('the worker copies committed pages into the database file while requests only append', async (t) => {
  const path = join(t.testdir(), 'db.sqlite')
  const errors: string[] = []
  const opened = openDatabase({ path, synchronous: 'NORMAL', checkpoint: 'background', onCheckpointError: (m) => errors.push(m) })
  t.teardown(async () => { await opened.close() })
  const { sqlite } = opened
  // SQLite's own checkpoint is only a backstop now (10,000 pages), far above what is written
  // below: whatever reaches the database file got there through the worker.
  t.equal(sqlite.pragma('wal_autocheckpoint', { simple: true }), 10_000)
  sqlite.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)')
  const before = statSync(path).size
  const insert = sqlite.prepare('INSERT INTO t (payload) VALUES (randomblob(4000))')
  for (let i = 0; i < 1500; i++) insert.run() // about 1,500 pages, 6 MB
  t.ok(statSync(`${path}-wal`).size > 5_000_000, 'the commits went to the WAL')
  t.ok(await until(() => statSync(path).size > before + 5_000_000, 5000), 'the database file grew by the committed pages')
  t.same(errors, [], 'no checkpoint failed')
})

t.test('close() stops the worker after a last checkpoint; every row is in the database file', async (t) => {
  const path = join(t.testdir(), 'db.sqlite')
  const opened = openDatabase({ path, synchronous: 'FULL', checkpoint: 'background' })
  opened.sqlite.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)')
  const insert = opened.sqlite.prepare('INSERT INTO t (payload) VALUES (randomblob(1000))')
  for (let i = 0; i < 300; i++) insert.run()
  await opened.close()
  t.notOk(existsSync(`${path}-wal`), 'no WAL is left behind')
  const reopened = new Database(path, { readonly: true })
  t.teardown(() => { reopened.close() })
  t.equal(reopened.prepare('SELECT count(*) FROM t').pluck().get(), 300)
})

t.test('the WAL stays bounded under back-to-back commits', async (t) => {
  const path = join(t.testdir(), 'db.sqlite')
  const opened = openDatabase({ path, synchronous: 'NORMAL', checkpoint: 'background' })
  t.teardown(async () => { await opened.close() })
  const { sqlite } = opened
  sqlite.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)')
  const insert = sqlite.prepare('INSERT INTO t (payload) VALUES (randomblob(3000))')
  let largest = 0
  // 30,000 commits: left alone, the WAL grows past 300 MB.
  for (let i = 0; i < 30_000; i++) {
    insert.run()
    if (i % 500 === 0) {
      largest = Math.max(largest, statSync(`${path}-wal`).size)
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  t.ok(largest < 100_000_000, `the WAL peaked at ${(largest / 1e6).toFixed(0)} MB (bound: the 40 MB backstop plus one checkpoint's worth)`)
})

t.test('a process killed while the worker runs loses no acknowledged commit', async (t) => {
  const path = join(t.testdir(), 'db.sqlite')
  const child = spawn(process.execPath, ['--import', 'tsx', join(HERE, '..', 'support', 'checkpoint-writer.ts')], {
    env: { ...process.env, DB_PATH: path },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  let acknowledged = 0
  const lines = createInterface({ input: child.stdout! })
  lines.on('line', (line) => { acknowledged = Math.max(acknowledged, Number(line)) })
  // Long enough for several checkpoints (every 200 ms) to have run, then no goodbye at all.
  t.ok(await until(() => acknowledged >= 3000, 30_000), 'the writer committed')
  await new Promise((resolve) => setTimeout(resolve, 300))
  child.kill('SIGKILL')
  await new Promise((resolve) => child.once('exit', resolve))
  const last = acknowledged
  const db = new Database(path)
  t.teardown(() => { db.close() })
  t.equal(db.pragma('integrity_check', { simple: true }), 'ok')
  const max = db.prepare('SELECT max(id) FROM acked').pluck().get() as number
  t.ok(max >= last, `every acknowledged row is there (last acknowledged ${last}, found up to ${max})`)
  t.equal(db.prepare('SELECT count(*) FROM acked').pluck().get(), max, 'and no row is missing before it')
})
