import { createHash, randomBytes } from 'node:crypto'
import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { openDatabase } from '../../db/client.js'
import { migrationsFolder, runMigrations } from '../../db/migrate.js'
import { createRefreshTokenCodec } from '../../src/auth/refresh-token.js'
import { migrateCommand } from '../../src/cli/migrate.js'
import { bearer, buildTestApp, login, refreshWithBody, register } from '../support/app.js'
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

t.test('npm run db:migrate migrates the database DATABASE_URL names', async (t) => {
  const path = join(t.testdir(), 'auth.db')
  t.equal(await migrateCommand({ DATABASE_URL: `file:${path}`, NODE_ENV: 'development' }), `migrated ${path}`)
  const { sqlite } = openDatabase({ path })
  t.teardown(() => sqlite.close())
  const journal = JSON.parse(readFileSync(join(migrationsFolder, 'meta', '_journal.json'), 'utf8')) as { entries: unknown[] }
  t.equal(sqlite.prepare('SELECT count(*) FROM __drizzle_migrations').pluck().get(), journal.entries.length, 'every migration applied')
})

/** The tag of the migration that ends sessions still on a token from before selectors. */
const END_LEGACY_TAG = (JSON.parse(readFileSync(join(migrationsFolder, 'meta', '_journal.json'), 'utf8')) as { entries: Array<{ tag: string }> })
  .entries.find((e) => e.tag.endsWith('_end_legacy_refresh_sessions'))?.tag ?? '9999'

t.test('the upgrade ends sessions whose current refresh token is of the 43-character kind from before selectors; the others keep refreshing', async (t) => {
  // The database as the commit before that migration left it: rows from before selectors marked legacy.
  const now = Date.now()
  const old = oldDatabase(t.testdir(), END_LEGACY_TAG, 'old', now)
  const { path } = old
  const key = randomBytes(32)
  const codec = createRefreshTokenCodec(key)
  old.sqlite.prepare("INSERT INTO server_secrets (name, value, created_at) VALUES ('refresh-token-derivation', ?, ?)").run(key, now)
  const session = old.sqlite.prepare(`INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, refresh_expires_at)
    VALUES (?, 'u1', ?, ?, ?, ?)`)
  const token = old.sqlite.prepare('INSERT INTO refresh_tokens (id, token_hash, session_id, successor_id, created_at, expires_at, spent_at, legacy) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
  for (const sid of ['legacy', 'selector', 'rotated']) session.run(sid, now, now, now + 86400_000, now + 3600_000)
  const secrets = { legacy: randomBytes(32), selector: randomBytes(32), rotatedFrom: randomBytes(32), rotated: randomBytes(32) }
  // A session still on its token from before selectors, found by digest.
  token.run(1, createHash('sha256').update(secrets.legacy).digest(), 'legacy', null, now, now + 3600_000, null, 1)
  // A session on a selector token.
  token.run(2, createHash('sha256').update(secrets.selector).digest(), 'selector', null, now, now + 3600_000, null, 0)
  // A session whose token from before selectors was rotated: its current token is a selector token.
  token.run(3, createHash('sha256').update(secrets.rotatedFrom).digest(), 'rotated', 4, now - 60_000, now + 3600_000, now - 60_000, 1)
  token.run(4, createHash('sha256').update(secrets.rotated).digest(), 'rotated', null, now - 60_000, now + 3600_000, null, 0)
  old.sqlite.close()

  const app = await buildTestApp(t, { DATABASE_URL: `file:${path}` })
  const ended = await refreshWithBody(app, secrets.legacy.toString('base64url'))
  t.equal(ended.statusCode, 401, 'the 43-character token is refused')
  t.equal(ended.json().code, 'REFRESH_TOKEN_INVALID')
  t.same(app.sqlite.prepare('SELECT id, revoked_reason FROM sessions WHERE revoked_at IS NOT NULL').all(), [{ id: 'legacy', revoked_reason: 'legacy_refresh_token' }],
    'its session is ended, with a reason that says why; no other is')
  t.same(app.sqlite.prepare("SELECT type, user_id, session_id, detail FROM audit_events WHERE type = 'session_revoked'").all(),
    [{ type: 'session_revoked', user_id: 'u1', session_id: 'legacy', detail: '{"reason":"legacy_refresh_token","by":"migration"}' }], 'and the audit trail says so')
  for (const [sid, id] of [['selector', 2], ['rotated', 4]] as const) {
    const res = await refreshWithBody(app, codec.encode(id, secrets[sid]))
    t.equal(res.statusCode, 200, `the session on a selector token (${sid}) refreshes`)
    t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(res.json().accessToken) })).json().id, 'u1')
  }
  const columns = app.sqlite.prepare("SELECT name FROM pragma_table_info('refresh_tokens')").pluck().all()
  t.notOk(columns.includes('legacy'), 'the legacy column is gone')
  t.same(app.sqlite.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'refresh_tokens'").all(), [], 'and so is its index')
  t.equal(app.sqlite.pragma('integrity_check', { simple: true }), 'ok')
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
    const before = old.sqlite.prepare('SELECT id, token_hash FROM refresh_tokens').all()
    const { path } = old
    old.sqlite.close()

    const app = await buildTestApp(t, { DATABASE_URL: `file:${path}` })
    t.same(indexes(app.sqlite), [], 'no index is left')
    t.same(app.sqlite.prepare('SELECT id, token_hash FROM refresh_tokens').all(), before, 'the token row as it was: not relabelled legacy (and so not ended with such tokens)')
    t.same(app.sqlite.prepare('SELECT revoked_at FROM sessions').pluck().all(), [null], 'its session goes on')
    const journal = JSON.parse(readFileSync(join(migrationsFolder, 'meta', '_journal.json'), 'utf8')) as { entries: unknown[] }
    t.equal(app.sqlite.prepare('SELECT count(*) FROM __drizzle_migrations').pluck().get(), journal.entries.length, 'each migration recorded once')
    t.equal(app.sqlite.pragma('integrity_check', { simple: true }), 'ok')
  })
}
