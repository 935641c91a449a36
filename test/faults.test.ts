/**
 * Database faults while the service runs: a read-only database, a full disk, and a write lock
 * held by another process. Each must give 503 DATABASE_UNAVAILABLE with Retry-After on the
 * routes that write (register, login, refresh), never a 500 or a crash, leave no half-written
 * state, and the same app instance must recover once the fault clears.
 *
 * How the faults are made, on a real SQLite file: the tests run as root, which ignores file
 * permissions, so chmod cannot make the file read-only. Instead:
 * - read-only: `PRAGMA query_only = 1` on the service's own connection. SQLite then refuses
 *   every write with SQLITE_READONLY, the same error a read-only file or mount gives.
 * - disk full: `PRAGMA max_page_count` set to the file's current size. A write that needs a
 *   new page fails with SQLITE_FULL, exactly as on a full file system.
 * - locked: a second connection holds `BEGIN IMMEDIATE`, and the service's busy timeout is
 *   short: its writes fail with SQLITE_BUSY, as when another process holds the lock too long.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { bearer, buildTestApp, login, PASSWORD, register } from './support/app.js'

function tempDb (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'auth-faults-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return join(dir, 'auth.db')
}

function assertUnavailable (t: Test, res: LightMyRequestResponse, label: string): void {
  t.equal(res.statusCode, 503, `${label}: 503`)
  t.same(res.json(), { statusCode: 503, code: 'DATABASE_UNAVAILABLE', message: 'The database is temporarily unavailable; retry later' }, `${label}: body`)
  t.ok(Number(res.headers['retry-after']) > 0, `${label}: Retry-After`)
}

const refresh = async (app: FastifyInstance, refreshToken: string): Promise<LightMyRequestResponse> =>
  await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken } })

interface Setup {
  app: FastifyInstance
  /** A live body-mode session of alice. */
  session: { accessToken: string, refreshToken: string }
}

async function setup (t: Test, env: Record<string, string> = {}): Promise<Setup> {
  const app = await buildTestApp(t, { DATABASE_URL: `file:${tempDb(t)}`, ...env })
  t.equal((await register(app)).statusCode, 201)
  const l = await login(app, { transport: 'body' })
  return { app, session: { accessToken: l.accessToken, refreshToken: l.refreshToken } }
}

t.test('read-only database: register, login and refresh answer 503 DATABASE_UNAVAILABLE; reads go on; all recover when it clears', async (t) => {
  const { app, session } = await setup(t)
  app.sqlite.pragma('query_only = 1')

  assertUnavailable(t, await register(app, 'bob'), 'register')
  assertUnavailable(t, (await login(app, { transport: 'body' })).res, 'login')
  assertUnavailable(t, await refresh(app, session.refreshToken), 'refresh')
  // What only reads keeps working: the Bearer check, the JWKS, the probes.
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(session.accessToken) })).statusCode, 200, 'me still answers')
  t.equal((await app.inject({ url: '/.well-known/jwks.json' })).statusCode, 200)
  t.equal((await app.inject({ url: '/health' })).statusCode, 200)

  app.sqlite.pragma('query_only = 0')
  t.equal((await register(app, 'bob')).statusCode, 201, 'register recovers')
  t.equal((await login(app, { username: 'bob', transport: 'body' })).res.statusCode, 200, 'login recovers')
  // The refused refresh spent nothing: the same token rotates now.
  const r = await refresh(app, session.refreshToken)
  t.equal(r.statusCode, 200, 'refresh recovers with the token of before the fault')
})

t.test('disk full: writes answer 503 DATABASE_UNAVAILABLE, nothing is half-written, and all recover when space returns', async (t) => {
  const { app, session } = await setup(t)
  const pages = app.sqlite.pragma('page_count', { simple: true }) as number
  app.sqlite.pragma(`max_page_count = ${pages}`)

  // Registrations fill the remaining free space in the last pages, then the disk is "full".
  const accepted: string[] = []
  let full: LightMyRequestResponse | undefined
  for (let i = 0; i < 300 && full === undefined; i++) {
    const res = await register(app, `filler-${i}`)
    if (res.statusCode === 201) accepted.push(`filler-${i}`)
    else full = res
  }
  t.ok(full !== undefined, `the database filled up after ${accepted.length} registrations`)
  assertUnavailable(t, full!, 'register on a full disk')
  const refused = `filler-${accepted.length}`
  // Logins write other tables, whose pages have room for a while too; each is done or refused.
  let loginFull: LightMyRequestResponse | undefined
  for (let i = 0; i < 300 && loginFull === undefined; i++) {
    const res = (await login(app, { transport: 'body' })).res
    if (res.statusCode !== 200) loginFull = res
  }
  assertUnavailable(t, loginFull!, 'login on a full disk')
  // Refresh likewise.
  let current = session.refreshToken
  let refreshFull: LightMyRequestResponse | undefined
  for (let i = 0; i < 300 && refreshFull === undefined; i++) {
    const res = await refresh(app, current)
    if (res.statusCode === 200) current = res.json().refreshToken
    else refreshFull = res
  }
  assertUnavailable(t, refreshFull!, 'refresh on a full disk')
  t.equal((await app.inject({ url: '/health' })).statusCode, 200, 'the process is up')

  app.sqlite.pragma('max_page_count = 1073741823')
  t.equal(app.sqlite.pragma('integrity_check', { simple: true }), 'ok')
  // The refused registration left nothing behind: the name is free, and registers now.
  t.equal((await register(app, refused)).statusCode, 201, 'the refused username registers after recovery')
  for (const name of accepted.slice(-3)) t.equal((await login(app, { username: name, transport: 'body' })).res.statusCode, 200, `${name} (accepted before the fault) logs in`)
  // The refused rotation spent nothing: the last token given still rotates.
  t.equal((await refresh(app, current)).statusCode, 200, 'refresh recovers with the last token given')
  const unspent = app.sqlite.prepare('SELECT session_id, count(*) AS n FROM refresh_tokens WHERE spent_at IS NULL GROUP BY session_id HAVING n <> 1').all()
  t.same(unspent, [], 'every session has exactly one unspent token')
})

t.test('write lock held by another process: writes answer 503 after the busy timeout; the service recovers when the lock is released', async (t) => {
  const path = tempDb(t)
  const app = await buildTestApp(t, { DATABASE_URL: `file:${path}`, DATABASE_BUSY_TIMEOUT_MS: '50' })
  t.equal((await register(app)).statusCode, 201)
  const l = await login(app, { transport: 'body' })

  const other = new Database(path)
  t.teardown(() => { if (other.open) other.close() })
  other.exec('BEGIN IMMEDIATE')
  assertUnavailable(t, await register(app, 'bob'), 'register while locked')
  assertUnavailable(t, (await login(app, { transport: 'body' })).res, 'login while locked')
  assertUnavailable(t, await refresh(app, l.refreshToken), 'refresh while locked')
  // WAL: readers are not blocked by a writer.
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(l.accessToken) })).statusCode, 200, 'reads go on')
  other.exec('ROLLBACK')
  other.close()

  t.equal((await register(app, 'bob')).statusCode, 201)
  t.equal((await login(app, { username: 'bob', transport: 'body' })).res.statusCode, 200)
  t.equal((await refresh(app, l.refreshToken)).statusCode, 200)
})

t.test('read-only database: a password change and a logout also answer 503, and change nothing', async (t) => {
  const { app, session } = await setup(t)
  app.sqlite.pragma('query_only = 1')
  const change = await app.inject({
    method: 'POST', url: '/api/auth/password', headers: bearer(session.accessToken),
    payload: { currentPassword: PASSWORD, newPassword: 'a different passphrase 77' }
  })
  assertUnavailable(t, change, 'password change')
  assertUnavailable(t, await app.inject({ method: 'POST', url: '/api/auth/logout', payload: { refreshToken: session.refreshToken } }), 'logout')
  app.sqlite.pragma('query_only = 0')
  t.equal((await login(app, { password: PASSWORD, transport: 'body' })).res.statusCode, 200, 'the old password still works')
  t.equal((await refresh(app, session.refreshToken)).statusCode, 200, 'the session was not ended')
})
