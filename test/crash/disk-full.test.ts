/**
 * A real full disk under a running service: the database lives on a small tmpfs (mounted here,
 * as root), the real server process (src/server.ts) registers accounts from several clients
 * until the file system is full and writes fail, and afterwards, with the service stopped and
 * space freed, every registration that was answered 201 must be in the database file. Every
 * other answer must be a clean JSON error (503 DATABASE_UNAVAILABLE with Retry-After), never a
 * 500.
 *
 * This is the case a `PRAGMA max_page_count` cannot show: in WAL mode a commit's frames are
 * written when the commit happens, and a failed commit of a statement read with `.get()`
 * outside a transaction is not reported by the driver, so the service would answer 201 for a
 * row that was never stored.
 *
 * Mounting needs root (or a mount namespace); where it is impossible the test is skipped with
 * the reason, except under CI=true, where it fails instead.
 */
import { rmSync, statfsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { openDatabase } from '../../db/client.js'
import { runMigrations } from '../../db/migrate.js'
import { createAuditRepository } from '../../db/repositories/audit.js'
import { createLeasesRepository } from '../../db/repositories/leases.js'
import { createUsersRepository } from '../../db/repositories/users.js'
import { serverEnv, startServer, type ServerProcess } from '../support/process.js'
import { tmpfs } from '../support/tmpfs.js'

const PASSWORD = 'disk full passphrase 2026'
const CLIENTS = 4

t.test('a full disk under load: every registration answered 201 is stored; the others are 503 DATABASE_UNAVAILABLE', async (t) => {
  const dir = tmpfs(t, 'auth-diskfull-', 'size=8m,mode=0700')
  if (dir === null) return

  const path = join(dir, 'auth.db')
  const env = serverEnv(path)
  let server: ServerProcess | undefined = await startServer(env)
  t.teardown(async () => { await server?.kill() })

  // The start's own writes (migrations, the signing key) are copied from the WAL into the file
  // first, as the service's checkpointer does a moment after the start: filled before that
  // copy, the disk refuses the file's growth, the WAL cannot restart, and every registration
  // fails (0 acknowledged, seen once in CI). FULL keeps the WAL file's size for reuse.
  const checkpoint = new Database(path)
  try {
    checkpoint.pragma('wal_checkpoint(FULL)')
  } finally {
    checkpoint.close()
  }
  // Leave about 160 KB free: a few dozen registrations fit, then the WAL cannot grow.
  const { bavail, bsize } = statfsSync(dir)
  const filler = join(dir, 'filler')
  writeFileSync(filler, Buffer.alloc(Math.max(0, bavail * bsize - 160 * 1024)))

  const acknowledged: string[] = []
  const refused: Array<{ status: number, body: string, retryAfter: string | null }> = []
  let stop = false
  let n = 0
  const client = async (id: number): Promise<void> => {
    while (!stop && n < 5000) {
      const username = `c${id}n${n++}`
      const res = await fetch(`${server!.base}/api/auth/register`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password: PASSWORD })
      })
      const body = await res.text()
      if (res.status === 201) acknowledged.push(username)
      else refused.push({ status: res.status, body, retryAfter: res.headers.get('retry-after') })
      // Once writes fail steadily, the disk is full.
      if (refused.length >= 40) stop = true
    }
  }
  await Promise.all(Array.from({ length: CLIENTS }, async (_, id) => { await client(id) }))
  t.ok(refused.length >= 40, `writes failed once the disk was full (${acknowledged.length} acknowledged, ${refused.length} refused)`)
  t.ok(acknowledged.length > 0, 'registrations were acknowledged before the disk filled')

  const bad = refused.filter((r) => {
    let json: { statusCode?: number, code?: string }
    try { json = JSON.parse(r.body) } catch { return true }
    return r.status !== 503 || json.statusCode !== 503 || json.code !== 'DATABASE_UNAVAILABLE' || !(Number(r.retryAfter) > 0)
  })
  t.same(bad.slice(0, 3), [], 'every refusal is 503 DATABASE_UNAVAILABLE with Retry-After, as JSON')

  // Stop the service, free the space, and look at what is really in the file.
  await server.kill('SIGTERM')
  server = undefined
  rmSync(filler)
  const db = new Database(path)
  try {
    t.equal(db.pragma('integrity_check', { simple: true }), 'ok', 'integrity_check ok')
    const stored = new Set((db.prepare('SELECT username FROM users').pluck().all() as string[]))
    const lost = acknowledged.filter((u) => !stored.has(u))
    t.same(lost, [], `all ${acknowledged.length} acknowledged registrations are stored`)
  } finally {
    db.close()
  }
})

t.test('every repository write on a full disk either throws or is stored (WAL mode, no transaction of the caller)', async (t) => {
  const dir = tmpfs(t, 'auth-diskfull-repo-', 'size=4m,mode=0700')
  if (dir === null) return
  const path = join(dir, 'auth.db')
  // SQLite's own commit path (synchronous NORMAL, WAL), as the service runs it under group commit.
  const opened = openDatabase({ path, synchronous: 'NORMAL' })
  runMigrations(opened.db)
  const users = createUsersRepository(opened.db)
  const audit = createAuditRepository(opened.db)
  const leases = createLeasesRepository(opened.db)
  const now = new Date()
  const base = await users.insert({ id: 'base', username: 'base', usernameKey: 'base', passwordHash: 'x'.repeat(97), roles: ['user'], now })
  t.ok(base !== null)

  const { bavail, bsize } = statfsSync(dir)
  const filler = join(dir, 'filler')
  writeFileSync(filler, Buffer.alloc(Math.max(0, bavail * bsize - 96 * 1024)))

  // Each write is answered (returns) or refused (throws); what was answered must be stored.
  const answered = { users: [] as string[], audit: [] as string[], leases: [] as string[], roles: [] as string[] }
  let failures = 0
  for (let i = 0; i < 3000 && failures < 40; i++) {
    const writes: Array<[keyof typeof answered, string, () => Promise<unknown>]> = [
      ['users', `u${i}`, async () => await users.insert({ id: `u${i}`, username: `u${i}`, usernameKey: `u${i}`, passwordHash: 'y'.repeat(97), roles: ['user'], now })],
      ['audit', `r${i}`, async () => { await audit.record({ type: 'login_failed', at: now, requestId: `r${i}`, detail: { pad: 'z'.repeat(200) } }) }],
      ['leases', `l${i}`, async () => { await leases.renew(`l${i}`, 'holder', new Date(now.getTime() + 60_000)) }],
      ['roles', `role${i}`, async () => { await users.setRoles('base', ['user', `role${i}`], now) }]
    ]
    for (const [kind, key, write] of writes) {
      try {
        await write()
        answered[kind].push(key)
      } catch (err) {
        failures++
        t.match(String((err as { code?: string }).code), /^SQLITE_(FULL|IOERR)/, `${kind}: refused as a full disk, not another error`)
      }
    }
  }
  t.ok(failures >= 40, `writes failed once the disk was full (${failures} refused)`)
  await opened.close()
  rmSync(filler)

  const db = new Database(path)
  try {
    const has = (sql: string, values: string[]): string[] => {
      const stmt = db.prepare(sql).pluck()
      return values.filter((v) => stmt.get(v) === undefined)
    }
    t.same(has('SELECT 1 FROM users WHERE id = ?', answered.users), [], `all ${answered.users.length} answered user inserts are stored`)
    t.same(has('SELECT 1 FROM audit_events WHERE request_id = ?', answered.audit), [], `all ${answered.audit.length} answered audit events are stored`)
    t.same(has('SELECT 1 FROM leases WHERE name = ?', answered.leases), [], `all ${answered.leases.length} answered leases are stored`)
    const lastRole = answered.roles.at(-1)
    if (lastRole !== undefined) t.match(String(db.prepare("SELECT roles FROM users WHERE id = 'base'").pluck().get()), lastRole, 'the last answered update is stored')
  } finally {
    db.close()
  }
})
