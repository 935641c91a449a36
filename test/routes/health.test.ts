import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { buildTestApp, login, register } from '../support/app.js'

t.test('GET /health answers 200 with status ok', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ url: '/health' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ok' })
  t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/)
})

t.test('GET /ready answers 200 while the database answers, 503 once it is closed', async (t) => {
  // SQLite, whatever TEST_DATABASE says: PostgreSQL going away is test/db/postgres.test.ts's.
  const app = await buildTestApp(t, { DATABASE_URL: ':memory:' })
  t.equal((await app.inject({ url: '/ready' })).statusCode, 200)
  app.sqlite.close()
  const res = await app.inject({ url: '/ready' })
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'SERVICE_UNAVAILABLE')
  // Reopen nothing: closing the app must not fail on an already-closed database.
})

t.test('probes are not rate limited', async (t) => {
  const app = await buildTestApp(t, { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_MAX: '2' })
  for (let i = 0; i < 5; i++) t.equal((await app.inject({ url: '/health' })).statusCode, 200)
  for (let i = 0; i < 5; i++) t.equal((await app.inject({ url: '/ready' })).statusCode, 200)
})

t.test('the data directory deleted while running: /ready answers 503 and writes are refused with 503', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'auth-gone-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const app = await buildTestApp(t, { DATABASE_URL: `file:${join(dir, 'data', 'auth.db')}` })
  t.equal((await register(app)).statusCode, 201)
  t.equal((await app.inject({ url: '/ready' })).statusCode, 200)

  rmSync(join(dir, 'data'), { recursive: true, force: true })
  const ready = await app.inject({ url: '/ready' })
  t.equal(ready.statusCode, 503, '/ready sees the file is gone')
  t.equal(ready.json().code, 'SERVICE_UNAVAILABLE')
  t.ok(Number(ready.headers['retry-after']) > 0, 'with Retry-After')
  const res = await register(app, 'bob')
  t.equal(res.statusCode, 503, 'a registration is refused, not acknowledged into an unlinked file')
  t.equal(res.json().code, 'DATABASE_UNAVAILABLE')
  t.ok(Number(res.headers['retry-after']) > 0, 'with Retry-After')
  t.equal((await login(app, { transport: 'body' })).res.statusCode, 503, 'a login (a session write) too')
})
