/**
 * Group commit (db/durability.ts): with DATABASE_SYNCHRONOUS=FULL on a file, SQLite runs at
 * synchronous=NORMAL and the service itself syncs the WAL before it answers. These tests watch
 * the real fdatasync calls (the fs module's own function, captured and passed through) on a
 * real database file, and hold or fail them to see what the service does meanwhile.
 */
import fs, { statSync } from 'node:fs'
import Database from 'better-sqlite3'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { openDatabase } from '../../db/client.js'
import { startServer } from '../support/process.js'
import { buildTestApp, login, PASSWORD, refreshWithBody, register } from '../support/app.js'
import { metric, scrape } from '../support/metrics.js'

type Callback = (err: NodeJS.ErrnoException | null) => void
const realFdatasync = fs.fdatasync

/** Every fdatasync from now on, with the descriptor it was given; each passes through to the real one. */
function watchSyncs (t: Test): Array<{ fd: number }> {
  const calls: Array<{ fd: number }> = []
  t.capture(fs, 'fdatasync', (fd: number, cb: Callback) => { calls.push({ fd }); realFdatasync(fd, cb) })
  return calls
}

/** Holds every fdatasync until `release()`; then each one runs for real. */
function holdSyncs (t: Test): { held: () => number, release: () => void } {
  let queue: Array<() => void> = []
  let holding = true
  t.capture(fs, 'fdatasync', (fd: number, cb: Callback) => {
    if (holding) queue.push(() => { realFdatasync(fd, cb) })
    else realFdatasync(fd, cb)
  })
  return {
    held: () => queue.length,
    release: () => { holding = false; for (const run of queue) run(); queue = [] }
  }
}

async function fileApp (t: Test, env: Record<string, string> = {}): Promise<{ app: FastifyInstance, path: string }> {
  const path = `${t.testdir()}/auth.db`
  const app = await buildTestApp(t, { DATABASE_URL: `file:${path}`, ...env })
  return { app, path }
}

const settle = async (ms = 50): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

t.test('FULL (the default) on a file: SQLite at NORMAL, and every write is synced on the WAL before its answer', async (t) => {
  const { app, path } = await fileApp(t)
  t.equal(app.sqlite.pragma('synchronous', { simple: true }), 1, 'SQLite itself does not sync on commit')
  t.not(app.durability, null, 'group commit is on')
  const calls = watchSyncs(t)
  t.equal((await register(app)).statusCode, 201)
  t.ok(calls.length >= 1, 'the registration was synced before it was answered')
  const wal = statSync(`${path}-wal`)
  for (const { fd } of calls) t.equal(fs.fstatSync(fd).ino, wal.ino, 'the descriptor synced is the WAL file')
  t.equal(app.durability!.pending, false, 'nothing left unsynced after the answer')

  calls.length = 0
  t.equal((await app.inject({ url: '/health' })).statusCode, 200)
  t.equal((await app.inject({ url: '/.well-known/jwks.json' })).statusCode, 200)
  t.equal(calls.length, 0, 'answers that follow no write wait for nothing')
})

t.test('no answer leaves before the sync that covers its commit has completed', async (t) => {
  const { app } = await fileApp(t)
  t.equal((await register(app)).statusCode, 201)
  const disk = holdSyncs(t)
  let answered: LightMyRequestResponse | null = null
  const pending = login(app, { transport: 'body' }).then((l) => { answered = l.res })
  await settle(300)
  t.equal(answered, null, 'the login is not answered while the WAL is not on disk')
  t.ok(disk.held() >= 1, 'its sync was asked for')
  // A read made meanwhile waits too: it could reveal the unsynced session (its sid is live).
  let health: LightMyRequestResponse | null = null
  const healthPending = app.inject({ url: '/health' }).then((res) => { health = res })
  await settle(50)
  t.equal(health, null, 'a later answer waits for the commits made before it')
  disk.release()
  await pending
  await healthPending
  t.equal(answered!.statusCode, 200, 'answered once the sync completed')
  t.equal(health!.statusCode, 200)
})

t.test('concurrent writes share syncs: fewer fdatasync calls than commits, each answer after its own', async (t) => {
  const { app } = await fileApp(t)
  t.equal((await register(app)).statusCode, 201)
  const tokens: string[] = []
  for (let i = 0; i < 20; i++) tokens.push((await login(app, { transport: 'body' })).refreshToken)
  const before = app.durability!.syncs
  const calls = watchSyncs(t)
  const results = await Promise.all(tokens.map(async (token) => await refreshWithBody(app, token)))
  t.same(results.map((r) => r.statusCode), tokens.map(() => 200), 'every refresh answered 200')
  t.ok(calls.length >= 1 && calls.length < tokens.length, `20 rotations, ${calls.length} fdatasync calls`)
  t.equal(app.durability!.syncs - before, calls.length, 'the count the service keeps is the real one')
  t.equal(app.durability!.pending, false)
  t.equal(metric(await scrape(app), 'auth_db_wal_syncs_total'), app.durability!.syncs, 'and the metric says it')
})

t.test('a failed fdatasync: 503 DATABASE_UNAVAILABLE, no retry that could vouch for lost data, /ready 503', async (t) => {
  const logs: string[] = []
  const path = `${t.testdir()}/auth.db`
  const app = await buildTestApp(t, { DATABASE_URL: `file:${path}`, LOG_LEVEL: 'info' }, {
    logStream: { write: (line: string) => { logs.push(line); return true } } as unknown as NodeJS.WritableStream
  })
  t.equal((await register(app)).statusCode, 201)
  const calls: number[] = []
  t.capture(fs, 'fdatasync', (fd: number, cb: Callback) => {
    calls.push(fd)
    process.nextTick(cb, Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5, syscall: 'fdatasync' }))
  })
  let failures = 0
  app.durability!.onFailure(() => { failures++ })

  const res = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'alice', password: PASSWORD, transport: 'body' } })
  t.equal(res.statusCode, 503)
  t.same(res.json(), { statusCode: 503, code: 'DATABASE_UNAVAILABLE', message: 'The database is temporarily unavailable; retry later' })
  t.ok(Number(res.headers['retry-after']) > 0, 'Retry-After')
  t.notOk(JSON.stringify(res.json()).includes('EIO'), 'no internal detail in the answer')
  t.equal(calls.length, 1)
  t.equal(failures, 1, 'the failure is reported once')
  t.ok(logs.some((l) => /"level":60/.test(l) && /durability lost/.test(l)), 'logged at fatal level')

  const again = await register(app, 'bob')
  t.equal(again.statusCode, 503, 'every later write is refused too')
  t.equal(calls.length, 1, 'and no second fdatasync is tried: after a failure its success would mean nothing')
  const ready = await app.inject({ url: '/ready' })
  t.equal(ready.statusCode, 503, '/ready reports it')
  t.equal(ready.json().code, 'SERVICE_UNAVAILABLE')
})

t.test('DATABASE_SYNCHRONOUS=NORMAL, :memory: and the CLI path make no group commit', async (t) => {
  const { app: normal } = await fileApp(t, { DATABASE_SYNCHRONOUS: 'NORMAL' })
  t.equal(normal.durability, null)
  t.equal(normal.sqlite.pragma('synchronous', { simple: true }), 1)
  const calls = watchSyncs(t)
  t.equal((await register(normal)).statusCode, 201)
  t.equal(calls.length, 0, 'NORMAL answers without waiting for the disk')

  const memory = await buildTestApp(t)
  t.equal(memory.durability, null, 'an in-memory database has nothing to sync')

  // What the admin and key CLIs open: SQLite's own FULL, which needs no cooperation.
  const cli = openDatabase({ path: `${t.testdir()}/cli.db` })
  t.teardown(() => cli.close())
  t.equal(cli.durability, null)
  t.equal(cli.sqlite.pragma('synchronous', { simple: true }), 2)
})

t.test('the real server stops after a failed fdatasync, and starts again on a consistent file', async (t) => {
  const dir = t.testdir()
  const env = { DATABASE_URL: `file:${dir}/auth.db`, NODE_ENV: 'test', ARGON2_MEMORY_KIB: '1024', ARGON2_TIME_COST: '1', PUBLIC_URL: 'http://localhost:3000' }
  const failing = await startServer({ ...env, FAIL_FSYNC_AFTER: '0' }, 60_000, [new URL('../support/failing-fsync.ts', import.meta.url).href])
  t.teardown(async () => { await failing.kill() })
  const res = await fetch(`${failing.base}/api/auth/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'alice', password: PASSWORD }) })
  t.equal(res.status, 503, 'the write that could not be synced is refused')
  t.equal((await res.json() as { code: string }).code, 'DATABASE_UNAVAILABLE')
  const exit = await Promise.race([failing.exited, settle(15_000).then(() => null)])
  t.not(exit, null, 'the process ended by itself')
  t.equal(exit?.code, 1, 'with exit code 1, for its supervisor to restart it')

  const again = await startServer(env)
  t.teardown(async () => { await again.kill() })
  const retry = await fetch(`${again.base}/api/auth/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'alice', password: PASSWORD }) })
  // The refused registration may or may not have reached the disk: either answer is honest.
  t.ok([201, 409].includes(retry.status), `after the restart the registration is answered (${retry.status})`)
  await again.kill('SIGTERM')
  const check = new Database(`${dir}/auth.db`, { readonly: true })
  t.teardown(() => check.close())
  t.equal(check.pragma('integrity_check', { simple: true }), 'ok')
})
