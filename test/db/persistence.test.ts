import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { openDatabase } from '../../db/client.js'
import { migrationsFolder, runMigrations } from '../../db/migrate.js'
import { bearer, buildTestApp, login, refreshWithBody, register } from '../helper.js'
import { migrate } from 'drizzle-orm/better-sqlite3/migrator'

t.test('users, sessions and the signing key survive a restart on the same file', async (t) => {
  const dir = t.testdir()
  const env = { DATABASE_URL: `file:${dir}/auth.db` }
  const first = await buildTestApp(t, env)
  const user = (await register(first)).json()
  const { accessToken, refreshToken } = await login(first, { transport: 'body' })
  const jwks = (await first.inject({ url: '/.well-known/jwks.json' })).json()
  await first.close()

  const second = await buildTestApp(t, env)
  t.same((await second.inject({ url: '/.well-known/jwks.json' })).json(), jwks, 'same keys published')
  const me = await second.inject({ url: '/api/auth/me', headers: bearer(accessToken) })
  t.equal(me.statusCode, 200, 'an access token from before the restart verifies')
  t.same(me.json(), user)
  t.equal((await refreshWithBody(second, refreshToken)).statusCode, 200, 'a refresh token from before the restart rotates')
  t.equal((await login(second)).res.statusCode, 200)
  t.equal((await register(second)).statusCode, 409)
})

t.test('the database is in WAL mode with foreign keys on and a busy timeout', async (t) => {
  const dir = t.testdir()
  const app = await buildTestApp(t, { DATABASE_URL: `file:${dir}/auth.db` })
  t.equal(app.sqlite.pragma('journal_mode', { simple: true }), 'wal')
  t.equal(app.sqlite.pragma('foreign_keys', { simple: true }), 1)
  t.equal(app.sqlite.pragma('busy_timeout', { simple: true }), 5000)
  // FULL by default, kept by the service's group commit (test/db/group-commit.test.ts).
  t.equal(app.config.databaseSynchronous, 'FULL', 'FULL by default')
  t.not(app.durability, null, 'through group commit')
  t.equal(app.sqlite.pragma('synchronous', { simple: true }), 1, 'SQLite itself at NORMAL under it')
  const normal = await buildTestApp(t, { DATABASE_URL: `file:${dir}/other.db`, DATABASE_SYNCHRONOUS: 'normal' })
  t.equal(normal.sqlite.pragma('synchronous', { simple: true }), 1, 'NORMAL when configured')
  t.equal(normal.durability, null, 'and no group commit')
})

t.test('migrations: idempotent, and an existing database at the first migration is upgraded with its data kept', async (t) => {
  const dir = t.testdir()
  // A copy of the migrations that stops at the first one: the database as the first release left it.
  const oldFolder = join(dir, 'migrations-v1')
  cpSync(migrationsFolder, oldFolder, { recursive: true })
  const journalPath = join(oldFolder, 'meta', '_journal.json')
  const journal = JSON.parse(readFileSync(journalPath, 'utf8'))
  journal.entries = journal.entries.slice(0, 1)
  writeFileSync(journalPath, JSON.stringify(journal))

  const path = join(dir, 'auth.db')
  const v1 = openDatabase({ path })
  migrate(v1.db, { migrationsFolder: oldFolder })
  v1.sqlite.prepare(`INSERT INTO users (id, username, username_key, password_hash, roles, disabled, created_at, updated_at, password_changed_at)
    VALUES ('u1', 'Old', 'old', '$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaA', '["user"]', 0, 1, 1, 1)`).run()
  v1.sqlite.close()

  const app = await buildTestApp(t, { DATABASE_URL: `file:${path}` })
  const applied = app.sqlite.prepare('SELECT count(*) AS n FROM __drizzle_migrations').get() as { n: number }
  t.equal(applied.n, JSON.parse(readFileSync(join(migrationsFolder, 'meta', '_journal.json'), 'utf8')).entries.length, 'every migration applied')
  t.same(app.sqlite.prepare('SELECT username FROM users').all(), [{ username: 'Old' }], 'data kept')
  t.equal((await register(app, 'old')).statusCode, 409, 'the upgraded database enforces what it did before')

  // Running the migrations again changes nothing.
  runMigrations(app.db)
  t.equal((app.sqlite.prepare('SELECT count(*) AS n FROM __drizzle_migrations').get() as { n: number }).n, applied.n)
  t.equal(app.sqlite.pragma('integrity_check', { simple: true }), 'ok')
})
