import { execFile } from 'node:child_process'
import { copyFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { runAdminCommand, type AdminIO } from '../../../src/cli/admin.js'
import { bearer, buildTestApp, login, PASSWORD, refreshWithBody, register, TEST_ENV } from '../../support/app.js'
import { decodeJwt } from '../../support/jwt.js'

const ADMIN_PASSWORD = 'the operators own passphrase'

/** Runs the CLI in-process on the database file `db`; returns exit code and output. */
function cli (db: string, extraEnv: Record<string, string> = {}) {
  return async (argv: string[], io: Partial<AdminIO> = {}): Promise<{ code: number, out: string, err: string }> => {
    const out: string[] = []
    const err: string[] = []
    const code = await runAdminCommand(argv, {
      env: { ...TEST_ENV, DATABASE_URL: `file:${db}`, ...extraEnv },
      stdout: (s) => { out.push(s) },
      stderr: (s) => { err.push(s) },
      ...io
    })
    return { code, out: out.join('\n'), err: err.join('\n') }
  }
}

function setup (t: Test) {
  const dir = t.testdir()
  const db = join(dir, 'auth.db')
  return { dir, db, run: cli(db), app: async () => await buildTestApp(t, { DATABASE_URL: `file:${db}` }) }
}

t.test('create-user bootstraps the first administrator, before the service ever ran', async (t) => {
  const { db, run, app: start } = setup(t)
  t.notOk(existsSync(db))
  const created = await run(['create-user', 'ops', '--roles', 'admin,user', '--password-stdin', '--json'], { readStdin: async () => `${ADMIN_PASSWORD}\n` })
  t.equal(created.code, 0, created.err)
  t.match(JSON.parse(created.out), { username: 'ops', roles: ['admin', 'user'], disabled: false })
  t.notOk(created.out.includes(ADMIN_PASSWORD), 'a password from stdin is not echoed')

  const app = await start()
  const session = await login(app, { username: 'ops', password: ADMIN_PASSWORD, transport: 'body' })
  t.equal(session.res.statusCode, 200)
  t.same(decodeJwt(session.accessToken).payload.roles, ['admin', 'user'])
  t.equal((await app.inject({ url: '/api/admin/users', headers: bearer(session.accessToken) })).statusCode, 200)
})

t.test('create-user without --password-stdin prints a generated password once; the usual rules apply', async (t) => {
  const { run, app: start } = setup(t)
  const created = await run(['create-user', 'bob'])
  t.equal(created.code, 0, created.err)
  const password = /generated password .*: (\S+)$/m.exec(created.out)?.[1]
  t.ok(password && password.length >= 24, 'a long random password')
  const app = await start()
  t.equal((await login(app, { username: 'bob', password })).res.statusCode, 200)

  t.equal((await run(['create-user', 'BOB'])).code, 1, 'taken')
  t.match((await run(['create-user', 'carol', '--password-stdin'], { readStdin: async () => 'short' })).err, /at least 12/)
  t.equal((await run(['create-user', 'x'])).code, 1, 'invalid username')
  t.equal((await run(['create-user', 'dave', '--roles', 'Bad Role'])).code, 64)
  t.equal((await run(['create-user'])).code, 64)
})

t.test('users and user: a table, or JSON', async (t) => {
  const { run, app: start } = setup(t)
  const app = await start()
  // The admin view shows no address (yet): compared without the user view's e-mail fields.
  const { email: _email, emailVerified: _verified, ...alice } = (await register(app)).json()
  await register(app, 'bob')
  const table = await run(['users'])
  t.equal(table.code, 0)
  t.match(table.out, /^id\s+username\s+roles\s+disabled\s+createdAt$/m)
  t.match(table.out, new RegExp(`^${alice.id}\\s+alice\\s+user\\s+false\\s+\\d{4}-`, 'm'))
  const json = JSON.parse((await run(['users', '--json', '--limit', '1'])).out)
  t.same(json.map((u: { username: string }) => u.username), ['alice'])
  t.same(JSON.parse((await run(['user', 'name:ALICE', '--json'])).out), { ...alice, disabled: false })
  t.same(JSON.parse((await run(['user', `id:${alice.id}`, '--json'])).out).username, 'alice')
  const missing = await run(['user', 'name:nobody'])
  t.equal(missing.code, 1)
  t.match(missing.err, /no user "name:nobody"/)
  t.equal((await run(['users', '--limit', 'many'])).code, 64)
})

t.test('disable ends every session of a running service at once; enable lets the user log in again', async (t) => {
  const { run, app: start } = setup(t)
  const app = await start()
  await register(app)
  const a = await login(app, { transport: 'body' })
  const b = await login(app, { transport: 'body' })
  const disabled = await run(['disable', 'name:alice'])
  t.equal(disabled.code, 0, disabled.err)
  t.match(disabled.out, /alice disabled; 2 session\(s\) ended/)
  t.equal((await refreshWithBody(app, a.refreshToken)).statusCode, 401)
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(b.accessToken) })).statusCode, 401)
  t.equal((await login(app)).res.statusCode, 401)
  t.equal((await run(['enable', 'name:alice'])).code, 0)
  t.equal((await login(app)).res.statusCode, 200)
})

t.test('set-roles, sessions, revoke-session, revoke-sessions', async (t) => {
  const { run, app: start } = setup(t)
  const app = await start()
  await register(app)
  const a = await login(app, { transport: 'body', headers: { 'user-agent': 'laptop/2' } })
  const b = await login(app, { transport: 'body' })
  const c = await login(app, { transport: 'body' })

  const roles = await run(['set-roles', 'name:alice', 'user,auditor'])
  t.equal(roles.code, 0)
  t.match(roles.out, /roles user -> user,auditor/)
  t.same(decodeJwt((await refreshWithBody(app, c.refreshToken)).json().accessToken).payload.roles, ['user', 'auditor'])
  t.equal((await run(['set-roles', 'name:alice', 'UPPER'])).code, 64)

  const sessions = JSON.parse((await run(['sessions', 'name:alice', '--json'])).out) as Array<{ id: string, userAgent: string | null }>
  t.equal(sessions.length, 3)
  const sidA = decodeJwt(a.accessToken).payload.sid as string
  t.equal(sessions.find((s) => s.id === sidA)?.userAgent, 'laptop/2')
  t.match((await run(['sessions', 'name:alice'])).out, /laptop\/2/)

  t.equal((await run(['revoke-session', sidA])).code, 0)
  t.equal((await refreshWithBody(app, a.refreshToken)).statusCode, 401)
  t.equal((await refreshWithBody(app, b.refreshToken)).statusCode, 200, 'the others go on')
  t.equal((await run(['revoke-session', sidA])).code, 1, 'already ended')
  const all = await run(['revoke-sessions', 'name:alice', '--json'])
  t.equal(JSON.parse(all.out).ended, 2)
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(b.accessToken) })).statusCode, 401)
})

t.test('audit: the newest events oldest first, filters, JSON lines, and --follow', async (t) => {
  const { run, app: start } = setup(t)
  const app = await start()
  await register(app)
  await login(app)
  await login(app, { password: 'not the password!' })
  await run(['disable', 'name:alice'])

  const table = await run(['audit'])
  t.equal(table.code, 0)
  const types = table.out.split('\n').slice(1).map((l) => l.split(/\s+/)[2])
  t.same(types, ['key_rotated', 'key_rotated', 'register', 'login_succeeded', 'login_failed', 'user_disabled'], 'the first key (created, activated), then the requests')
  t.match(table.out, /"by":"cli"/)
  const failed = (await run(['audit', '--type', 'login_failed', '--json'])).out.split('\n').map((l) => JSON.parse(l))
  t.equal(failed.length, 1)
  t.match(failed[0], { type: 'login_failed', detail: { reason: 'wrong_password' }, ip: '127.0.0.1' })
  t.equal((await run(['audit', '--user', 'name:alice', '--limit', '2', '--json'])).out.split('\n').length, 2)
  t.equal((await run(['audit', '--type', 'bogus'])).code, 64)

  // --follow prints what happens after it started, until stopped.
  const controller = new AbortController()
  const lines: string[] = []
  const following = runAdminCommand(['audit', '--follow', '--json', '--limit', '1'], {
    env: { ...TEST_ENV, DATABASE_URL: app.config.databaseUrl },
    stdout: (s) => {
      lines.push(s)
      if (JSON.parse(s).type === 'register') controller.abort()
    },
    signal: controller.signal,
    followIntervalMs: 20
  })
  await new Promise((resolve) => setTimeout(resolve, 50))
  await register(app, 'newcomer')
  t.equal(await following, 0)
  t.same(lines.map((l) => JSON.parse(l).type), ['user_disabled', 'register'])
})

t.test('backup: an online copy of the live database, checked; restoring it brings the data back', async (t) => {
  const { dir, run, app: start } = setup(t)
  const app = await start()
  await register(app)
  const session = await login(app, { transport: 'body' })
  const target = join(dir, 'backup.db')
  const backup = await run(['backup', target, '--json'])
  t.equal(backup.code, 0, backup.err)
  t.match(JSON.parse(backup.out), { file: target, users: 1, integrity: 'ok' })
  t.notOk(existsSync(`${target}-wal`) || existsSync(`${target}-shm`), 'one self-contained file')
  t.match((await run(['backup', target])).err, /exists/, 'never overwrites')
  t.equal((await run(['backup', join(dir, 'no/such/dir/b.db')])).code, 1)
  await register(app, 'after-the-backup')

  // The documented restore: the service is stopped, the backup replaces the database file.
  const restored = join(dir, 'restored.db')
  copyFileSync(target, restored)
  const second = await buildTestApp(t, { DATABASE_URL: `file:${restored}` })
  t.equal((await login(second)).res.statusCode, 200, 'users are back')
  t.equal((await refreshWithBody(second, session.refreshToken)).statusCode, 200, 'so are sessions and the token keys')
  t.equal((await login(second, { username: 'after-the-backup' })).res.statusCode, 401, 'later changes are not')
})

t.test('prune runs housekeeping once', async (t) => {
  const { run, app: start } = setup(t)
  const app = await start()
  app.sqlite.prepare("INSERT INTO audit_events (at, type) VALUES (?, 'login_failed')").run(Date.now() - 365 * 86_400_000)
  const res = await run(['prune', '--json'])
  t.equal(res.code, 0, res.err)
  t.match(JSON.parse(res.out), { auditEvents: 1, sessions: 0 })
})

t.test('keys list and keys rotate (delegated to the key CLI); a rotation is audited', async (t) => {
  const { run, app: start } = setup(t)
  const app = await start()
  const list = await run(['keys', 'list', '--json'])
  t.equal(list.code, 0, list.err)
  const before = JSON.parse(list.out) as Array<{ kid: string }>
  t.equal(before.length, 1)
  const rotated = await run(['keys', 'rotate', '--immediate', '--json'])
  t.equal(rotated.code, 0, rotated.err)
  const created = JSON.parse(rotated.out).events.find((e: { type: string }) => e.type === 'created')
  t.ok(created.kid !== before[0]!.kid)
  const lines = (await run(['audit', '--type', 'key_rotated', '--json'])).out.split('\n').map((l) => JSON.parse(l))
  t.match(lines.at(-1), { type: 'key_rotated', detail: { kid: created.kid, immediate: true, by: 'cli' } })
  t.same(lines.slice(0, -1).map((e) => e.detail.by), ['schedule', 'schedule'], 'before it, the first key of the service\'s boot')
  t.ok(app)
})

t.test('usage and configuration errors have their own exit codes', async (t) => {
  const { run } = setup(t)
  t.equal((await run([])).code, 64)
  t.match((await run(['--help'])).out, /usage: npm run admin/)
  t.equal((await run(['frobnicate'])).code, 64)
  t.equal((await run(['users', '--bogus'])).code, 64)
  const noDb = await run(['users'])
  t.equal(noDb.code, 1)
  t.match(noDb.err, /no database at/)
  t.equal((await cli(':memory:', { DATABASE_URL: ':memory:' })(['users'])).code, 1)
  t.equal((await cli('x.db', { PASSWORD_MIN_LENGTH: 'twelve' })(['users'])).code, 78)
})

t.test('npm run admin -- ... runs the same commands as a program', async (t) => {
  const { db, run } = setup(t)
  const created = await run(['create-user', 'erin'])
  t.equal(created.code, 0, created.err)
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/admin.ts', 'users', '--json'], {
    env: { ...process.env, ...TEST_ENV, DATABASE_URL: `file:${db}` },
    timeout: 30_000
  })
  t.same(JSON.parse(stdout).map((u: { username: string }) => u.username), ['erin'])
  t.ok(PASSWORD)
})

t.test('user selectors are explicit (id:<id>, name:<username>); a username shaped like an id changes nothing', async (t) => {
  const { run, app: start } = setup(t)
  const app = await start()
  const victim = (await register(app)).json()
  await app.repos.users.insert({ id: 'attacker-1', username: victim.id, usernameKey: victim.id, passwordHash: 'x', roles: ['user'], now: new Date() })
  t.equal(JSON.parse((await run(['user', `id:${victim.id}`, '--json'])).out).username, 'alice')
  t.equal(JSON.parse((await run(['user', `name:${victim.id}`, '--json'])).out).id, 'attacker-1')
  const disabled = await run(['disable', `id:${victim.id}`, '--json'])
  t.equal(disabled.code, 0, disabled.err)
  t.equal(JSON.parse(disabled.out).id, victim.id)
  t.equal(JSON.parse((await run(['user', 'id:attacker-1', '--json'])).out).disabled, false, 'the look-alike account is untouched')
  for (const command of ['user', 'disable', 'enable', 'sessions', 'revoke-sessions']) {
    const bare = await run([command, victim.id])
    t.equal(bare.code, 64, `${command} with a bare selector`)
    t.match(bare.err, /id:<id> or name:<username>/)
  }
  t.equal((await run(['set-roles', 'alice', 'user'])).code, 64)
  t.equal((await run(['audit', '--user', 'alice'])).code, 64)
  t.equal((await run(['user', 'id:alice'])).code, 1, 'id: never falls back to a name')
})
