/**
 * Moving up: `admin database copy` copies a SQLite file into an empty PostgreSQL database, and a
 * service started on PostgreSQL goes on with every session as if nothing had happened. Real
 * service processes on a real SQLite file and a real PostgreSQL (TEST_POSTGRES_URL; without it
 * skipped, or under CI=true run on a cluster of its own).
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import t, { type Test } from 'tap'
import { COPIED_TABLES, SKIPPED_TABLES } from '../../db/copy-to-postgres.js'
import { buildApp } from '../../src/app.js'
import { runAdminCommand } from '../../src/cli/admin.js'
import { migrateCommand } from '../../src/cli/migrate.js'
import { register, testConfig } from '../support/app.js'
import { freshPostgresDatabase, queryPostgres, TEST_POSTGRES_URL } from '../support/pg.js'
import { findPostgresBin, startPostgresCluster } from '../support/postgres-cluster.js'
import { runToExit, serverEnv, startServer, type ServerProcess } from '../support/process.js'

const ORIGIN = 'http://localhost:3000'
const PASSWORD = 'correct horse battery staple'

/**
 * The PostgreSQL server: TEST_POSTGRES_URL's; without it, under CI=true, a throwaway cluster of
 * this file's own (CI never skips the move; no server binaries there is a failure); otherwise
 * the PostgreSQL tests are skipped, saying so.
 */
let adminUrl = TEST_POSTGRES_URL === '' ? undefined : TEST_POSTGRES_URL
if (adminUrl === undefined && process.env.CI === 'true') {
  const found = findPostgresBin()
  if ('bin' in found) {
    const cluster = await startPostgresCluster({ bin: found.bin, maxConnections: 50 })
    t.teardown(cluster.stop)
    adminUrl = cluster.url
  } else {
    t.fail(`CI=true and no TEST_POSTGRES_URL: the copy to PostgreSQL must be tested, and no cluster can be started: ${found.missing}`)
  }
}
const needsPostgres = adminUrl === undefined ? { skip: 'copy to PostgreSQL skipped: set TEST_POSTGRES_URL to an administrator URL of a throwaway server' } : {}
const freshDatabase = async (t: Test): Promise<{ url: string }> => await freshPostgresDatabase(t, adminUrl)

function tempFile (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'auth-copy-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return join(dir, 'auth.db')
}

async function admin (argv: string[], env: Record<string, string>): Promise<{ code: number, out: string, err: string }> {
  let out = ''
  let err = ''
  const code = await runAdminCommand(argv, { env, stdout: (s) => { out += s + '\n' }, stderr: (s) => { err += s + '\n' } })
  return { code, out, err }
}

async function post (server: ServerProcess, path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number, json: any, cookie: string | undefined }> {
  const res = body === undefined
    ? await fetch(server.base + path, { method: 'POST', headers })
    : await fetch(server.base + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
  const text = await res.text()
  const cookie = res.headers.getSetCookie().map((c) => /^refresh_token=([^;]*)/.exec(c)?.[1]).find((v) => v !== undefined && v !== '')
  return { status: res.status, json: text === '' ? null : JSON.parse(text), cookie }
}

async function me (server: ServerProcess, accessToken: string): Promise<{ status: number, json: any }> {
  const res = await fetch(server.base + '/api/auth/me', { headers: { authorization: `Bearer ${accessToken}` } })
  return { status: res.status, json: await res.json() }
}

/** A SQLite file with one user, built in this process; closed before it returns. */
async function sourceWithUser (t: Test): Promise<string> {
  const path = tempFile(t)
  const app = await buildApp(testConfig({ DATABASE_URL: `file:${path}` }))
  t.equal((await register(app)).statusCode, 201)
  await app.close()
  return path
}

t.test('sessions move from SQLite to PostgreSQL: the same refresh token refreshes, the access token verifies, reuse is still detected', needsPostgres, async (t) => {
  const path = tempFile(t)
  const settings = { KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64'), REFRESH_REUSE_INTERVAL: '0' }

  // On SQLite: register, log in twice (body and cookie), refresh the body session once.
  const before = await startServer(serverEnv(path, settings))
  t.teardown(async () => { await before.kill() })
  t.equal((await post(before, '/api/auth/register', { username: 'alice', password: PASSWORD })).status, 201)
  const bodyLogin = await post(before, '/api/auth/login', { username: 'alice', password: PASSWORD, transport: 'body' })
  t.equal(bodyLogin.status, 200)
  const cookieLogin = await post(before, '/api/auth/login', { username: 'alice', password: PASSWORD }, { origin: ORIGIN })
  t.equal(cookieLogin.status, 200)
  t.ok(cookieLogin.cookie, 'the cookie login set a refresh cookie')
  const spent = bodyLogin.json.refreshToken as string
  const rotated = await post(before, '/api/auth/refresh', { refreshToken: spent })
  t.equal(rotated.status, 200)
  const live = rotated.json.refreshToken as string
  const accessToken = rotated.json.accessToken as string
  t.equal((await me(before, accessToken)).status, 200)
  await before.kill('SIGTERM')

  const sqlite = new Database(path, { readonly: true })
  const sourceCounts = Object.fromEntries(COPIED_TABLES.map((x) => [x.name, Number(sqlite.prepare(`SELECT count(*) FROM ${x.name}`).pluck().get())]))
  const sourceAudit = sqlite.prepare('SELECT id, type, user_id AS userId FROM audit_events ORDER BY id').all() as Array<{ id: number, type: string, userId: string | null }>
  const sourceUser = sqlite.prepare('SELECT id, username_fold, username_skeleton, credential_epoch, password_hash FROM users').get() as Record<string, unknown>
  sqlite.close()
  t.equal(sourceCounts.refresh_tokens, 3, 'two logins and one rotation: three tokens, one spent')

  // The copy, into a database migrated as the docs say.
  const { url } = await freshDatabase(t)
  await migrateCommand({ DATABASE_URL: url })
  const copy = await admin(['database', 'copy', '--to', url], serverEnv(path, settings))
  t.equal(copy.code, 0, copy.err)
  for (const [name, n] of Object.entries(sourceCounts)) t.match(copy.out, new RegExp(`^${name}\\s+${n}$`, 'm'), `prints ${n} row(s) of ${name}`)
  t.match(copy.out, /^leases\s+not copied$/m)
  const json = await admin(['database', 'copy', '--to', url, '--json'], serverEnv(path, settings))
  t.equal(json.code, 1, 'a second copy into the same database is refused')

  const [user] = await queryPostgres(url, 'SELECT id, username_fold, username_skeleton, credential_epoch, password_hash FROM users')
  t.same(user, sourceUser, 'the user with its keys, security stamp and password hash')
  const chain = await queryPostgres<{ id: string, successor_id: string | null, spent: boolean }>(url, 'SELECT id, successor_id, spent_at IS NOT NULL AS spent FROM refresh_tokens ORDER BY id')
  t.equal(chain.filter((r) => r.spent).length, 1, 'the spent token is there, spent')
  t.ok(chain.find((r) => r.spent)!.successor_id !== null, 'with its successor link')
  const copiedMaxId = Math.max(...chain.map((r) => Number(r.id)))

  // Another KEY_ENCRYPTION_KEY cannot open the copied keys: the start is refused, naming it.
  const wrongKey = await runToExit({ ...serverEnv(path, { ...settings, KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64') }), DATABASE_URL: url })
  t.not(wrongKey.code, 0)
  t.match(wrongKey.stderr + wrongKey.stdout, /KEY_ENCRYPTION_KEY is not the key it was sealed with/)

  // On PostgreSQL, with the same settings.
  const after = await startServer(serverEnv(path, { ...settings, DATABASE_URL: url }))
  t.teardown(async () => { await after.kill() })
  const who = await me(after, accessToken)
  t.equal(who.status, 200, 'the access token issued on SQLite verifies: the same signing key')
  t.equal(who.json.username, 'alice')

  const next = await post(after, '/api/auth/refresh', { refreshToken: live })
  t.equal(next.status, 200, 'the same refresh token refreshes on PostgreSQL')
  t.equal((await me(after, next.json.accessToken)).status, 200)
  const newIds = await queryPostgres<{ id: string }>(url, 'SELECT id FROM refresh_tokens WHERE id > $1', [copiedMaxId])
  t.equal(newIds.length, 1, 'the successor got an id past the copied ones')

  const cookieRefresh = await post(after, '/api/auth/refresh', undefined, { cookie: `refresh_token=${cookieLogin.cookie!}`, origin: ORIGIN })
  t.equal(cookieRefresh.status, 200, 'the cookie session refreshes too')
  t.ok(cookieRefresh.cookie)

  const reuse = await post(after, '/api/auth/refresh', { refreshToken: spent })
  t.equal(reuse.status, 401, 'the token spent on SQLite is refused')
  t.equal((await post(after, '/api/auth/refresh', { refreshToken: next.json.refreshToken })).status, 401, 'and its reuse ended the session')
  t.equal((await post(after, '/api/auth/refresh', undefined, { cookie: `refresh_token=${cookieRefresh.cookie!}`, origin: ORIGIN })).status, 200, 'the other session lives on')

  const relogin = await post(after, '/api/auth/login', { username: 'ALICE', password: PASSWORD, transport: 'body' })
  t.equal(relogin.status, 200, 'the password logs in (the name found by its fold key)')
  await after.kill('SIGTERM')

  // The audit log: every event of SQLite, with its id, then the new ones.
  const audit = await admin(['audit', '--json', '--limit', '1000'], { ...serverEnv(path, settings), DATABASE_URL: url })
  t.equal(audit.code, 0, audit.err)
  const events = audit.out.trim().split('\n').map((l) => JSON.parse(l) as { id: number, type: string, userId: string | null })
  t.same(events.slice(0, sourceAudit.length).map((e) => ({ id: e.id, type: e.type, userId: e.userId })), sourceAudit)
  t.ok(events.slice(sourceAudit.length).some((e) => e.type === 'refresh_reuse_detected'), 'reuse detected on PostgreSQL is recorded after them')
  t.ok(events.slice(sourceAudit.length).every((e) => e.id > sourceAudit.at(-1)!.id), 'new events take ids past the copied ones')
})

t.test('every table of the PostgreSQL schema is copied or skipped on purpose', needsPostgres, async (t) => {
  const { url } = await freshDatabase(t)
  await migrateCommand({ DATABASE_URL: url })
  const tables = (await queryPostgres<{ name: string }>(url, "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")).map((r) => r.name)
  t.same(tables, [...COPIED_TABLES.map((x) => x.name), ...Object.keys(SKIPPED_TABLES)].sort())
})

t.test('a target that is not empty is refused, naming --to, and left as it was', needsPostgres, async (t) => {
  const path = await sourceWithUser(t)
  const { url } = await freshDatabase(t)
  await migrateCommand({ DATABASE_URL: url })
  await queryPostgres(url, "INSERT INTO server_secrets (name, value) VALUES ('refresh_token_key', '\\x00')")
  const r = await admin(['database', 'copy', '--to', url], serverEnv(path))
  t.equal(r.code, 1)
  t.match(r.err, /^admin: --to: refusing the PostgreSQL database \S+: it is not empty \(server_secrets: 1 row\(s\)\); copy into a new database that was only migrated\n$/)
  t.same(await queryPostgres(url, 'SELECT count(*)::int AS n FROM users'), [{ n: 0 }])
})

t.test('a target that is not migrated is refused, naming --to and what to run, and nothing is created', needsPostgres, async (t) => {
  const path = await sourceWithUser(t)
  const { url } = await freshDatabase(t)
  const r = await admin(['database', 'copy', '--to', url], serverEnv(path))
  t.equal(r.code, 1)
  t.match(r.err, /^admin: --to: refusing the PostgreSQL database \S+: it is not migrated to this release's schema \(0 of \d+ migrations applied\); migrate it first with DATABASE_URL=<the target URL> npm run db:migrate [^\n]*\n$/)
  t.same(await queryPostgres(url, "SELECT to_regclass('public.users')::text AS t"), [{ t: null }])
})

t.test('an unreachable target is refused in one line naming --to, without its password', async (t) => {
  const path = await sourceWithUser(t)
  const r = await admin(['database', 'copy', '--to', 'postgres://auth:hunter2@127.0.0.1:1/auth'], serverEnv(path))
  t.equal(r.code, 1)
  t.match(r.err, /^admin: --to: cannot connect to PostgreSQL at postgres:\/\/auth:\*\*\*@127\.0\.0\.1:1\/auth; [^\n]*ECONNREFUSED[^\n]*\n$/)
  t.notMatch(r.err, /hunter2/)
})

t.test('the options are checked: --to is required and must be PostgreSQL, the source must be SQLite', async (t) => {
  const path = await sourceWithUser(t)
  const none = await admin(['database', 'copy'], serverEnv(path))
  t.equal(none.code, 64)
  t.match(none.err, /^admin: database copy needs --to postgres:/)
  const file = await admin(['database', 'copy', '--to', 'file:/tmp/x.db'], serverEnv(path))
  t.equal(file.code, 64)
  t.match(file.err, /^admin: --to must be a postgres:\/\/ URL/)
  const scheme = await admin(['database', 'copy', '--to', 'mysql://x/y'], serverEnv(path))
  t.equal(scheme.code, 64)
  t.match(scheme.err, /^admin: --to: the scheme "mysql:" is not supported/)
  const fromPg = await admin(['database', 'copy', '--from', 'postgres://a@127.0.0.1:1/b', '--to', 'postgres://a@127.0.0.1:1/c'], serverEnv(path))
  t.equal(fromPg.code, 1)
  t.match(fromPg.err, /^admin: --from: --from names PostgreSQL; the source must be the SQLite database/)
  const absent = await admin(['database', 'copy', '--from', join(path, '..', 'nothing.db'), '--to', 'postgres://a@127.0.0.1:1/c'], serverEnv(path))
  t.equal(absent.code, 1)
  t.match(absent.err, /^admin: --from: cannot open the SQLite database /)
})

t.test('a SQLite source that is not migrated is refused, naming --from, and left unchanged', async (t) => {
  const path = tempFile(t)
  new Database(path).close()
  const r = await admin(['database', 'copy', '--from', path, '--to', 'postgres://a@127.0.0.1:1/c'], serverEnv(path))
  t.equal(r.code, 1)
  t.match(r.err, /^admin: --from: refusing the SQLite database \S+: it is not migrated to this release's schema \(0 of \d+ migrations applied\)/)
  const check = new Database(path, { readonly: true })
  t.same(check.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all(), [], 'nothing was created in it')
  check.close()
})

t.test('a copy that fails midway leaves the target empty: one transaction, and the message holds no row values', needsPostgres, async (t) => {
  const path = await sourceWithUser(t)
  // A session whose user is gone (possible in SQLite with foreign keys off): PostgreSQL's
  // foreign key refuses it after the users were inserted.
  const db = new Database(path)
  db.pragma('foreign_keys = OFF')
  db.prepare("INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, refresh_expires_at) VALUES ('orphan', 'no-such-user', 0, 0, 0, 0)").run()
  const hash = db.prepare('SELECT password_hash FROM users').pluck().get() as string
  db.close()
  const { url } = await freshDatabase(t)
  await migrateCommand({ DATABASE_URL: url })
  const r = await admin(['database', 'copy', '--to', url], serverEnv(path))
  t.equal(r.code, 1)
  t.match(r.err, /^admin: copying sessions failed; nothing was copied \(the transaction was rolled back\): [^\n]*foreign key[^\n]*\n$/)
  t.notMatch(r.err, hash, 'no password hash in the message')
  for (const x of COPIED_TABLES) t.same(await queryPostgres(url, `SELECT count(*)::int AS n FROM ${x.name}`), [{ n: 0 }], `${x.name} is empty`)
})
