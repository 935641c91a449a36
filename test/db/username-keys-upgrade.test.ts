/**
 * Upgrading a database from before fold keys and skeletons: names that now collide (equal up
 * to full case folding, or confusable) were all accepted then. Every one of them still logs
 * in with the name it registered, the admin CLI lists the collisions without changing them,
 * and new names are checked against every old one.
 */
import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { drizzle } from 'drizzle-orm/better-sqlite3'
import { migrate } from 'drizzle-orm/better-sqlite3/migrator'
import t from 'tap'
import { migrationsFolder } from '../../db/migrate.js'
import { createPasswordHasher } from '../../src/auth/passwords.js'
import { runAdminCommand } from '../../src/cli/admin.js'
import { buildTestApp, login, PASSWORD, register, TEST_ENV } from '../support/app.js'

/** The migrations as they were before fold keys (0000..0003). */
function oldMigrations (dir: string): string {
  const folder = join(dir, 'migrations')
  cpSync(migrationsFolder, folder, { recursive: true })
  const journalFile = join(folder, 'meta', '_journal.json')
  const journal = JSON.parse(readFileSync(journalFile, 'utf8')) as { entries: Array<{ tag: string }> }
  journal.entries = journal.entries.filter((e) => /^000[0-3]_/.test(e.tag))
  writeFileSync(journalFile, JSON.stringify(journal))
  return folder
}

t.test('an old database with colliding names: every user still logs in; the CLI lists the collisions', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'auth.db')
  const sqlite = new Database(file)
  migrate(drizzle(sqlite), { migrationsFolder: oldMigrations(dir) })
  t.notOk((sqlite.prepare('PRAGMA table_info(users)').all() as Array<{ name: string }>).some((c) => c.name === 'username_fold'), 'the old schema')
  const hash = await (await createPasswordHasher({ memoryCost: 1024, timeCost: 1, parallelism: 1 })).hash(PASSWORD)
  const insert = sqlite.prepare(`INSERT INTO users (id, username, username_key, password_hash, roles, created_at, updated_at, password_changed_at)
    VALUES (?, ?, ?, ?, '["user"]', ?, ?, ?)`)
  // What the old code stored: the lower-cased name as the only key.
  const old = [['u-1', 'Straße'], ['u-2', 'STRASSE'], ['u-3', 'root'], ['u-4', 'r\u043e\u043et'], ['u-5', 'alice'], ['u-6', 'ΚΟΣΜΟΣ'], ['u-7', 'κοσμοσ']] as const
  old.forEach(([id, username], i) => insert.run(id, username, username.toLowerCase(), hash, i, i, i))
  sqlite.close()

  const app = await buildTestApp(t, { DATABASE_URL: `file:${file}` })
  for (const [id, username] of old) {
    const res = await login(app, { username, transport: 'body' })
    t.equal(res.res.statusCode, 200, `${username} logs in with the name it registered`)
    const me = await app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${res.accessToken}` } })
    t.equal(me.json().id, id, `${username} is its own account`)
  }
  t.equal((await login(app, { username: 'ALICE' })).res.statusCode, 200, 'a name without a collision: any case')
  const sharp = await login(app, { username: 'STRAẞE', transport: 'body' })
  t.equal((await app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${sharp.accessToken}` } })).json().id, 'u-1', 'STRAẞE lower-cases to Straße\'s old key')
  t.equal((await login(app, { username: 'κοςμοσ' })).res.statusCode, 401, 'a spelling that matches neither colliding row\'s old key finds nobody')
  for (const name of ['strasse', 'Root', 'r00t', 'Alice']) t.equal((await register(app, name)).statusCode, 409, `${name}: taken by an old row`)

  const out: string[] = []
  const code = await runAdminCommand(['usernames', 'collisions', '--json'], { env: { ...TEST_ENV, DATABASE_URL: `file:${file}` }, stdout: (s) => { out.push(s) }, stderr: (s) => { out.push(s) } })
  t.equal(code, 0, out.join('\n'))
  const groups = JSON.parse(out.join('\n')) as Array<{ kind: string, value: string, users: Array<{ id: string }> }>
  // Names equal up to case also share a skeleton; those pairs are listed once, as fold groups.
  t.same(groups.map((g) => [g.kind, g.value, g.users.map((u) => u.id)]), [
    ['fold', 'strasse', ['u-1', 'u-2']],
    ['fold', 'κοσμοσ', ['u-6', 'u-7']],
    ['skeleton', 'root', ['u-3', 'u-4']]
  ])
  const text: string[] = []
  await runAdminCommand(['usernames', 'collisions'], { env: { ...TEST_ENV, DATABASE_URL: `file:${file}` }, stdout: (s) => { text.push(s) } })
  t.match(text.join('\n'), /same name up to case \(fold strasse\):\nid\s+username/)
  t.match(text.join('\n'), /look alike \(skeleton root\):[^]*u-4\s+r\u043e\u043et/)
  t.equal((await login(app, { username: 'r\u043e\u043et' })).res.statusCode, 200, 'listing changed nothing')
})

t.test('usernames collisions on a database without any', async (t) => {
  const dir = t.testdir()
  const env = { ...TEST_ENV, DATABASE_URL: `file:${join(dir, 'auth.db')}` }
  const app = await buildTestApp(t, env)
  await register(app)
  const out: string[] = []
  t.equal(await runAdminCommand(['usernames', 'collisions'], { env, stdout: (s) => { out.push(s) } }), 0)
  t.equal(out.join('\n'), 'no collisions')
  const err: string[] = []
  t.equal(await runAdminCommand(['usernames', 'rename'], { env, stderr: (s) => { err.push(s) } }), 64)
})
