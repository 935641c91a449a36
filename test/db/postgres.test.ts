/**
 * The PostgreSQL backend against a real server (TEST_POSTGRES_URL; skipped without it): start
 * refusals, migrations applied once however many instances start at once, and the rules that
 * must hold between instances, checked with two apps (two pools) on one database.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'
import { once } from 'node:events'
import pg from 'pg'
import t, { type Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { createPgRepositories } from '../../db/repositories/pg/index.js'
import { openPostgres } from '../../db/pg/client.js'
import { join } from 'node:path'
import { runAdminCommand } from '../../src/cli/admin.js'
import { migrateCommand } from '../../src/cli/migrate.js'
import { login, refreshWithBody, register, testConfig, bearer, TEST_ENV } from '../support/app.js'
import { freshPostgresDatabase, needsPostgres, queryPostgres, TEST_POSTGRES_URL } from '../support/pg.js'
import { runToExit } from '../support/process.js'

async function appOn (t: Test, url: string, env: Record<string, string> = {}) {
  const app = await buildApp(testConfig({ DATABASE_URL: url, ...env }))
  t.teardown(() => app.close())
  return app
}

t.test('an unreachable server stops the start: one line naming DATABASE_URL, exit 78', needsPostgres, async (t) => {
  const r = await runToExit({ DATABASE_URL: 'postgres://auth@127.0.0.1:1/auth' })
  t.equal(r.code, 78)
  const lines = r.stderr.trimEnd().split('\n')
  t.equal(lines.length, 1, r.stderr)
  t.match(lines[0], /^auth-service: DATABASE_URL: cannot connect to PostgreSQL at postgres:\/\/auth@127\.0\.0\.1:1\/auth; check that the server runs and is reachable \(ECONNREFUSED: /)
})

t.test('a database the server refuses (no such database) stops the start, naming DATABASE_URL', needsPostgres, async (t) => {
  const url = new URL(TEST_POSTGRES_URL!)
  url.pathname = '/no_such_database_here'
  url.password = 'hunter2'
  const r = await runToExit({ DATABASE_URL: url.toString() })
  t.equal(r.code, 78)
  t.match(r.stderr.trimEnd(), /^auth-service: DATABASE_URL: PostgreSQL at \S+ refused the connection; check the user, password and database name \(3D000: database "no_such_database_here" does not exist\)$/)
  t.notMatch(r.stderr, /hunter2/, 'the password is not printed')
})

t.test('a database whose schema is newer than the code is refused at start', needsPostgres, async (t) => {
  const { url } = await freshPostgresDatabase(t)
  const first = await buildApp(testConfig({ DATABASE_URL: url }))
  await first.close()
  await queryPostgres(url, 'INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ($1, $2)', ['f'.repeat(64), Date.now() + 86_400_000])
  await t.rejects(buildApp(testConfig({ DATABASE_URL: url })), { name: 'DatabaseOpenError', message: /^DATABASE_URL: refusing the database at \S+ \(the database's schema is newer than this release: 1 migration/ })
})

t.test('migrations are applied once when several instances start on one empty database at once, and again is a no-op', needsPostgres, async (t) => {
  const { url } = await freshPostgresDatabase(t)
  const apps = await Promise.all([0, 1, 2].map(async () => await appOn(t, url)))
  const applied = await queryPostgres<{ n: number }>(url, 'SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations')
  await appOn(t, url)
  t.same(await queryPostgres(url, 'SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations'), applied)
  t.ok(applied[0]!.n >= 1)
  // Every instance serves, on the one schema, with one shared server secret.
  t.equal((await register(apps[0]!)).statusCode, 201)
  const { refreshToken } = await login(apps[1]!)
  t.equal((await refreshWithBody(apps[2]!, refreshToken)).statusCode, 200)
})

t.test('one refresh token presented to two instances at once: exactly one successor, the same answer from both', needsPostgres, async (t) => {
  const { url } = await freshPostgresDatabase(t)
  const a = await appOn(t, url)
  const b = await appOn(t, url)
  await register(a)
  let token = (await login(a, { transport: 'body' })).refreshToken
  for (let round = 0; round < 20; round++) {
    const [ra, rb] = await Promise.all([refreshWithBody(a, token), refreshWithBody(b, token)])
    t.equal(ra.statusCode, 200, `round ${round}: instance a`)
    t.equal(rb.statusCode, 200, `round ${round}: instance b`)
    t.equal(ra.json().refreshToken, rb.json().refreshToken, 'within the reuse interval both answer the one successor')
    token = ra.json().refreshToken
  }
  const children = await queryPostgres<{ parent_id: string, n: number }>(url, 'SELECT parent_id, count(*)::int AS n FROM refresh_tokens WHERE parent_id IS NOT NULL GROUP BY parent_id HAVING count(*) > 1')
  t.same(children, [], 'no token has two successors')
  t.same(await queryPostgres(url, 'SELECT count(*)::int AS n FROM refresh_tokens WHERE spent_at IS NULL'), [{ n: 1 }], 'one live token in the chain')
})

t.test('reuse after the interval, detected on another instance, ends the session everywhere', needsPostgres, async (t) => {
  const { url } = await freshPostgresDatabase(t)
  const a = await appOn(t, url, { REFRESH_REUSE_INTERVAL: '0' })
  const b = await appOn(t, url, { REFRESH_REUSE_INTERVAL: '0' })
  await register(a)
  const first = await login(a, { transport: 'body' })
  const rotated = await refreshWithBody(a, first.refreshToken)
  t.equal(rotated.statusCode, 200)
  t.equal((await refreshWithBody(b, first.refreshToken)).statusCode, 401, 'the spent token is refused on b')
  t.equal((await refreshWithBody(a, rotated.json().refreshToken)).statusCode, 401, 'and its successor on a: the session has ended')
  t.equal((await a.inject({ method: 'GET', url: '/api/auth/me', headers: bearer(rotated.json().accessToken) })).statusCode, 401, 'its access token too (the sid check)')
  t.same(await queryPostgres(url, "SELECT count(*)::int AS n FROM audit_events WHERE type = 'refresh_reuse_detected'"), [{ n: 1 }])
})

t.test('logout on one instance: the session is refused by the other at once', needsPostgres, async (t) => {
  const { url } = await freshPostgresDatabase(t)
  const a = await appOn(t, url)
  const b = await appOn(t, url)
  await register(a)
  const { accessToken } = await login(a, { transport: 'body' })
  t.equal((await b.inject({ method: 'GET', url: '/api/auth/me', headers: bearer(accessToken) })).statusCode, 200)
  t.equal((await a.inject({ method: 'POST', url: '/api/auth/logout-all', headers: bearer(accessToken) })).statusCode, 204)
  t.equal((await b.inject({ method: 'GET', url: '/api/auth/me', headers: bearer(accessToken) })).statusCode, 401)
})

t.test('repositories over two pools: conditional writes decide once', needsPostgres, async (t) => {
  const { url } = await freshPostgresDatabase(t)
  await (await appOn(t, url)).close()
  const pools = [0, 1].map(() => openPostgres({ url, poolSize: 4, statementTimeoutMs: 5000, ssl: 'disable' }))
  t.teardown(async () => { for (const p of pools) await p.pool.end() })
  const [r1, r2] = pools.map((p) => createPgRepositories(p.db)) as [ReturnType<typeof createPgRepositories>, ReturnType<typeof createPgRepositories>]
  const now = new Date()
  const later = new Date(now.getTime() + 60_000)

  // A lease: of many takers at once on two pools, one holds it.
  const takers = await Promise.all(Array.from({ length: 10 }, async (_x, i) => await (i % 2 === 0 ? r1 : r2).leases.acquire('housekeeping', `holder-${i}`, now, later)))
  t.equal(takers.filter(Boolean).length, 1, 'exactly one instance holds the lease')

  // Two registrations of one name at once: one user.
  const user = { username: 'Dora', usernameKey: 'dora', passwordHash: 'x', roles: ['user'], now }
  const made = await Promise.all([r1.users.insert({ ...user, id: 'u1' }), r2.users.insert({ ...user, id: 'u2', username: 'DORA' })])
  t.equal(made.filter((u) => u !== null).length, 1, 'one of two colliding registrations wins')
  const owner = made.find((u) => u !== null)!

  // Rotations of one token at once from both pools: one successor.
  const first = await r1.sessions.start({ id: 's1', userId: owner.id, credentialEpoch: 0, userAgent: null, ip: null, amr: ['pwd'], now, expiresAt: later, tokenHash: Buffer.alloc(32, 1), tokenExpiresAt: later })
  t.type(first, 'number')
  const outcomes = await Promise.all(Array.from({ length: 8 }, async (_x, i) => await (i % 2 === 0 ? r1 : r2).sessions.rotate({ parentId: first!, sessionId: 's1', tokenHash: Buffer.alloc(32, i), expiresAt: later, now })))
  t.equal(outcomes.filter((o) => o.outcome === 'rotated').length, 1)
  t.same(await queryPostgres(url, 'SELECT count(*)::int AS n FROM refresh_tokens WHERE parent_id = $1', [first]), [{ n: 1 }], 'the losers left no row')

  // The security stamp: a login checked at the old stamp starts no session after logout-all.
  t.equal(await r2.sessions.revokeAllForUser(owner.id, 'logout_all', now), 1)
  t.equal(await r1.sessions.start({ id: 's2', userId: owner.id, credentialEpoch: 0, userAgent: null, ip: null, amr: ['pwd'], now, expiresAt: later, tokenHash: Buffer.alloc(32, 9), tokenExpiresAt: later }), null)
  // A password change checked at a stale stamp changes nothing.
  t.same(await r1.users.changePassword({ id: owner.id, passwordHash: 'y', epoch: 0, keepSessionId: 's1', now }), { changed: false })
  t.equal((await r2.users.findById(owner.id))!.passwordHash, 'x')
  // A rehash against a hash changed meanwhile is not stored.
  t.equal(await r1.users.rehashPassword(owner.id, 'not-the-hash', 'z'), false)
})

/** A TCP relay to the server that the test can cut and restore: PostgreSQL going away and coming back. */
async function relay (target: URL): Promise<{ port: number, cut: () => Promise<void>, restore: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  let server: Server
  let port = 0
  const listen = async (): Promise<void> => {
    server = createServer((client) => {
      const upstream = connect(Number(target.port || 5432), target.hostname)
      for (const s of [client, upstream]) { sockets.add(s); s.on('close', () => sockets.delete(s)); s.on('error', () => {}) }
      client.pipe(upstream).pipe(client)
    })
    server.listen(port, '127.0.0.1')
    await once(server, 'listening')
    port = (server.address() as { port: number }).port
  }
  await listen()
  return {
    port,
    cut: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
    restore: listen
  }
}

t.test('PostgreSQL gone during requests: 503 DATABASE_UNAVAILABLE with Retry-After, /ready 503, and recovery without a restart', needsPostgres, async (t) => {
  const { url } = await freshPostgresDatabase(t)
  const direct = new URL(url)
  const r = await relay(direct)
  const via = new URL(url)
  via.hostname = '127.0.0.1'
  via.port = String(r.port)
  const app = await appOn(t, via.toString(), { DATABASE_STATEMENT_TIMEOUT_MS: '2000' })
  await register(app)
  const { accessToken } = await login(app, { transport: 'body' })
  await r.cut()
  const me = await app.inject({ method: 'GET', url: '/api/auth/me', headers: bearer(accessToken) })
  t.equal(me.statusCode, 503)
  t.equal(me.json().code, 'DATABASE_UNAVAILABLE')
  t.ok(me.headers['retry-after'], 'Retry-After is set')
  t.equal((await app.inject({ method: 'GET', url: '/ready' })).statusCode, 503)
  const reg = await register(app, 'bob')
  t.equal(reg.statusCode, 503, 'a write is refused cleanly too')
  await r.restore()
  t.equal((await app.inject({ method: 'GET', url: '/ready' })).statusCode, 200, 'ready again')
  t.equal((await app.inject({ method: 'GET', url: '/api/auth/me', headers: bearer(accessToken) })).statusCode, 200, 'serving again')
  await r.cut()
})

t.test('the admin, keys and migrate commands work on PostgreSQL', needsPostgres, async (t) => {
  const { url } = await freshPostgresDatabase(t)
  const env = { ...TEST_ENV, DATABASE_URL: url }
  t.equal(await migrateCommand(env), `migrated ${url}`)
  const app = await appOn(t, url)
  t.equal((await register(app)).statusCode, 201)
  const out: string[] = []
  const io = { env, stdout: (s: string) => { out.push(s) }, stderr: (s: string) => { out.push(s) } }
  t.equal(await runAdminCommand(['users', '--json'], io), 0, out.join('\n'))
  t.match(JSON.parse(out.pop()!), [{ username: 'alice' }])
  t.equal(await runAdminCommand(['disable', 'name:alice'], io), 0, out.join('\n'))
  t.equal((await login(app)).res.statusCode, 401, 'disabled by the CLI, refused by the service')
  t.equal(await runAdminCommand(['keys', 'rotate', '--immediate', '--json'], io), 0, out.join('\n'))
  t.same(await queryPostgres(url, "SELECT count(*)::int AS n FROM signing_keys WHERE state = 'current'"), [{ n: 1 }])
  t.same(await queryPostgres(url, "SELECT count(*)::int AS n FROM audit_events WHERE type = 'key_rotated' AND detail->>'by' = 'cli'"), [{ n: 1 }], "the CLI's audit event is written before it exits")
  t.equal(await runAdminCommand(['backup', join(t.testdir(), 'x.db')], io), 1)
  t.match(out.pop(), /^admin: backup copies a SQLite database; on PostgreSQL use pg_dump/)
})

t.test('a statement stuck behind a lock held elsewhere ends at DATABASE_STATEMENT_TIMEOUT_MS with 503, and the row is usable again after', needsPostgres, async (t) => {
  const { url } = await freshPostgresDatabase(t)
  const app = await appOn(t, url, { DATABASE_STATEMENT_TIMEOUT_MS: '300' })
  await register(app)
  // Another client (a long migration, an operator's transaction) holds the user's row.
  const holder = new pg.Client({ connectionString: url })
  await holder.connect()
  t.teardown(async () => { await holder.end() })
  await holder.query('BEGIN')
  await holder.query("SELECT * FROM users WHERE username_key = 'alice' FOR UPDATE")
  const res = (await login(app)).res
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'DATABASE_UNAVAILABLE')
  t.ok(Number(res.headers['retry-after']) > 0)
  await holder.query('ROLLBACK')
  t.equal((await login(app)).res.statusCode, 200)
})

t.test('two instances on one PostgreSQL database, maintaining the key ring at the same moment, rotate once', needsPostgres, async (t) => {
  const { url } = await freshPostgresDatabase(t)
  const [a, b] = await Promise.all([appOn(t, url), appOn(t, url)])
  t.equal(a!.keyRing.signingKey(new Date()).kid, b!.keyRing.signingKey(new Date()).kid, 'one first key, used by both')
  const due = new Date(Date.now() + 30 * 86400_000)
  const [ea, eb] = await Promise.all([a!.keyRing.maintain(due), b!.keyRing.maintain(due)])
  t.equal([...ea, ...eb].filter((e) => e.type === 'created').length, 1)
  t.same((await queryPostgres<{ state: string }>(url, 'SELECT state FROM signing_keys ORDER BY activates_at')).map((r) => r.state), ['current', 'next'])
  await b!.keyRing.reload()
  t.equal(a!.keyRing.jwks().etag, b!.keyRing.jwks().etag, 'both serve the same key set')
})
