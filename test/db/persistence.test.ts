import { createHash, randomBytes } from 'node:crypto'
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

/**
 * A database file as an older release left it: migrated with a copy of the migrations that
 * stops before the first whose tag is `before` or later, with one user `username` in it.
 */
function oldDatabase (dir: string, before: string, username: string, at: number): { path: string, sqlite: ReturnType<typeof openDatabase>['sqlite'] } {
  const folder = join(dir, `migrations-before-${before}`)
  cpSync(migrationsFolder, folder, { recursive: true })
  const journalPath = join(folder, 'meta', '_journal.json')
  const journal = JSON.parse(readFileSync(journalPath, 'utf8'))
  journal.entries = journal.entries.filter((e: { tag: string }) => e.tag < before)
  writeFileSync(journalPath, JSON.stringify(journal))
  const path = join(dir, 'auth.db')
  const old = openDatabase({ path })
  migrate(old.db, { migrationsFolder: folder })
  old.sqlite.prepare(`INSERT INTO users (id, username, username_key, password_hash, roles, disabled, created_at, updated_at, password_changed_at)
    VALUES ('u1', ?, ?, '$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaA', '["user"]', 0, ?, ?, ?)`).run(username, username.toLowerCase(), at, at, at)
  return { path, sqlite: old.sqlite }
}

t.test('migrations: idempotent, and an existing database at the first migration is upgraded with its data kept', async (t) => {
  // The database as the first release left it.
  const v1 = oldDatabase(t.testdir(), '0001', 'Old', 1)
  const path = v1.path
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

t.test('a session from before refresh-token selectors keeps working after the upgrade: its 43-character token rotates', async (t) => {
  // The database as it was before migration 0002: tokens found by the digest of the whole token.
  const now = Date.now()
  const old = oldDatabase(t.testdir(), '0002', 'old', now)
  const path = old.path
  const secret = randomBytes(32)
  old.sqlite.prepare(`INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, refresh_expires_at)
    VALUES ('s1', 'u1', ?, ?, ?, ?)`).run(now, now, now + 86400_000, now + 3600_000)
  old.sqlite.prepare('INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES (?, ?, ?, ?)')
    .run(createHash('sha256').update(secret).digest(), 's1', now, now + 3600_000)
  old.sqlite.close()

  const app = await buildTestApp(t, { DATABASE_URL: `file:${path}` })
  t.same(app.sqlite.prepare('SELECT legacy, session_id FROM refresh_tokens').all(), [{ legacy: 1, session_id: 's1' }], 'the old row is kept, marked legacy')
  const legacyToken = secret.toString('base64url')
  const first = await refreshWithBody(app, legacyToken)
  t.equal(first.statusCode, 200, 'the old token rotates')
  t.match(first.json().refreshToken, /^[A-Za-z0-9_-]{64}$/, 'into a token of the new form')
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(first.json().accessToken) })).json().id, 'u1')
  const again = await refreshWithBody(app, legacyToken)
  t.equal(again.json().refreshToken, first.json().refreshToken, 're-presented within the reuse interval: the same successor')
  t.equal((await refreshWithBody(app, first.json().refreshToken)).statusCode, 200, 'and the chain goes on')
  t.equal(app.sqlite.prepare("SELECT count(*) FROM refresh_tokens WHERE legacy = 1").pluck().get(), 1, 'new rows are not legacy')
  const plan = app.sqlite.prepare('EXPLAIN QUERY PLAN SELECT id FROM refresh_tokens WHERE token_hash = ? AND legacy = 1').all(Buffer.alloc(32)) as Array<{ detail: string }>
  t.match(plan.map((p) => p.detail).join(' '), /refresh_tokens_legacy_token_hash_unique/, 'legacy tokens are found through the partial index')
})

/**
 * 0002 as the migration left databases between 9adfa1e and its restoration: without the index,
 * recorded under the `when` that version of the journal had. Such a database must not run
 * 0002 again (it would mark every token legacy) and must take 0003 as a no-op.
 */
const INTERIM_0002_WHEN = 1796296119241

for (const variant of ['with the index 0002 built', 'from the interim 0002 without it'] as const) {
  t.test(`a database from before migration 0003, ${variant}: the expiry index is gone, 0002 is not run again, its tokens are untouched`, async (t) => {
    const now = Date.now()
    const old = oldDatabase(t.testdir(), '0003', 'old', now)
    const indexes = (db: typeof old.sqlite): string[] => db.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'refresh_tokens' ORDER BY name").pluck().all() as string[]
    t.same(indexes(old.sqlite), ['refresh_tokens_expires_at_idx', 'refresh_tokens_legacy_token_hash_unique'], '0002 builds the index')
    if (variant === 'from the interim 0002 without it') {
      old.sqlite.exec('DROP INDEX refresh_tokens_expires_at_idx')
      old.sqlite.prepare('UPDATE __drizzle_migrations SET created_at = ? WHERE created_at = (SELECT max(created_at) FROM __drizzle_migrations)').run(INTERIM_0002_WHEN)
    }
    old.sqlite.prepare(`INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, refresh_expires_at)
      VALUES ('s1', 'u1', ?, ?, ?, ?)`).run(now, now, now + 86400_000, now + 3600_000)
    old.sqlite.prepare('INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES (?, ?, ?, ?)').run(randomBytes(32), 's1', now, now + 3600_000)
    const before = old.sqlite.prepare('SELECT id, token_hash, legacy FROM refresh_tokens').all()
    const { path } = old
    old.sqlite.close()

    const app = await buildTestApp(t, { DATABASE_URL: `file:${path}` })
    t.same(indexes(app.sqlite), ['refresh_tokens_legacy_token_hash_unique'], 'only the partial index on legacy digests is left')
    t.same(app.sqlite.prepare('SELECT id, token_hash, legacy FROM refresh_tokens').all(), before, 'the token row as it was: not relabelled legacy')
    const journal = JSON.parse(readFileSync(join(migrationsFolder, 'meta', '_journal.json'), 'utf8')) as { entries: unknown[] }
    t.equal(app.sqlite.prepare('SELECT count(*) FROM __drizzle_migrations').pluck().get(), journal.entries.length, 'each migration recorded once')
    t.equal(app.sqlite.pragma('integrity_check', { simple: true }), 'ok')
  })
}
