/**
 * A configuration the service cannot run with stops the real entry point (src/server.ts) with
 * exit code 78 (EX_CONFIG) and ONE line on stderr that names the environment variable, the value
 * given and what is allowed; a database it cannot open names the path and the fix.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { databaseOpenError } from '../../src/config.js'
import { runToExit } from '../support/process.js'

async function start (env: Record<string, string>): Promise<{ code: number | null, stderr: string, stdout: string }> {
  return await runToExit({ DATABASE_URL: ':memory:', ...env })
}

async function refused (t: Test, env: Record<string, string>, line: string | RegExp): Promise<void> {
  const r = await start(env)
  t.equal(r.code, 78, 'exit 78 (EX_CONFIG)')
  const lines = r.stderr.trimEnd().split('\n')
  t.equal(lines.length, 1, `one line on stderr: ${r.stderr}`)
  if (typeof line === 'string') t.equal(lines[0], line)
  else t.match(lines[0], line)
}

const cases: Array<[Record<string, string>, string]> = [
  [{ JWT_ALGORITHM: 'none' }, "auth-service: JWT_ALGORITHM: 'none' is not allowed; use one of ES256, RS256, EdDSA, HS256"],
  [{ REFRESH_COOKIE_SAMESITE: 'bogus' }, "auth-service: REFRESH_COOKIE_SAMESITE: 'bogus' is not allowed; use one of Strict, Lax, None"],
  [{ ACCESS_TOKEN_TTL: '0' }, "auth-service: ACCESS_TOKEN_TTL: '0' is not allowed; use a duration of at least 1s (seconds, or a number with s, m, h or d, e.g. 15m)"],
  [{ PORT: '99999' }, "auth-service: PORT: '99999' is not allowed; use an integer from 0 to 65535"],
  [{ LOG_LEVEL: 'loud' }, "auth-service: LOG_LEVEL: 'loud' is not allowed; use one of fatal, error, warn, info, debug, trace, silent"],
  [{ THREAD_POOL_NICE: '20' }, "auth-service: THREAD_POOL_NICE: '20' is not allowed; use an integer from 0 to 19"],
  [{ RATE_LIMIT_LOGIN_MAX: '0' }, "auth-service: RATE_LIMIT_LOGIN_MAX: '0' is not allowed; use an integer of at least 1"],
  [{ DATABASE_URL: 'mysql://db/auth' }, 'auth-service: DATABASE_URL: the scheme "mysql:" is not supported; use postgres://user:password@host:port/database for PostgreSQL, or a file path or file:<path> for SQLite'],
  [{ DATABASE_URL: 'postgres://db/auth', DATABASE_POOL_SIZE: '0' }, "auth-service: DATABASE_POOL_SIZE: '0' is not allowed; use an integer from 1 to 1000"]
]
for (const [env, line] of cases) {
  t.test(`${JSON.stringify(env)} is refused in one line naming the variable, the value and what is allowed`, async (t) => {
    await refused(t, env, line)
  })
}

t.test('NODE_ENV=production refusals fit on one line too', async (t) => {
  await refused(t, { NODE_ENV: 'production', DATABASE_URL: ':memory:', RATE_LIMIT_ENABLED: 'false' },
    /^auth-service: refusing to start with NODE_ENV=production: RATE_LIMIT_ENABLED=false .*; DATABASE_URL=:memory: /)
})

t.test('a database directory that cannot be created names the path and the fix', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'auth-dberr-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'not-a-dir'), '')
  const file = join(dir, 'not-a-dir', 'auth.db')
  await refused(t, { DATABASE_URL: `file:${file}` },
    // The fix depends on where it runs: outside a container, a directory to make writable; inside, the chown.
    new RegExp(`^auth-service: DATABASE_URL: cannot open the database ${file} \\((EEXIST|ENOTDIR): .*\\); (make ${join(dir, 'not-a-dir')} a directory that user \\S+ \\(uid \\d+\\) can write, or point DATABASE_URL elsewhere|the directory ${join(dir, 'not-a-dir')} must be writable .* sudo chown -R \\d+:\\d+ .*)$`))
})

t.test('a database path that SQLite cannot open names the path', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'auth-dberr-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'auth.db'))
  await refused(t, { DATABASE_URL: `file:${join(dir, 'auth.db')}` },
    new RegExp(`^auth-service: DATABASE_URL: cannot open the database ${join(dir, 'auth.db')} \\(SQLITE_CANTOPEN: .*\\); (make|the directory) ${dir} `))
})

t.test('in a container the message gives the chown to run for a bind mount', async (t) => {
  const err = Object.assign(new Error('unable to open database file'), { name: 'SqliteError', code: 'SQLITE_CANTOPEN' })
  const line = databaseOpenError(err, '/data/auth.db', true)
  t.match(line, /^DATABASE_URL: cannot open the database \/data\/auth\.db \(SQLITE_CANTOPEN: unable to open database file\); the directory \/data must be writable by the container's user \S+ \(uid (\d+)\); for a bind mount, run on the host: sudo chown -R \d+:\d+ <the host directory mounted at \/data>$/)
  t.equal(databaseOpenError(Object.assign(new Error('x'), { code: 'ENOENT', path: '/app/dist/db/migrations' }), '/data/auth.db', true), undefined,
    'a missing file elsewhere is not blamed on the database')
  t.equal(databaseOpenError(new Error('something else'), '/data/auth.db', true), undefined)
  t.match(databaseOpenError(Object.assign(new Error("EACCES: permission denied, mkdir '/srv/auth'"), { code: 'EACCES', path: '/srv/auth' }), '/srv/auth/auth.db', false),
    /^DATABASE_URL: cannot open the database \/srv\/auth\/auth\.db \(EACCES: permission denied, mkdir '\/srv\/auth'\); make \/srv\/auth a directory that user \S+ \(uid \d+\) can write, or point DATABASE_URL elsewhere$/)
})
