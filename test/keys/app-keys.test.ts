/**
 * The key ring inside the service: restarts on a database file, KEY_ENCRYPTION_KEY, two
 * instances on one file, the automatic check, and the contract for a change of JWT_ALGORITHM.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { buildTestApp, login, TEST_ENV, testConfig } from '../support/app.js'
import { fakeDate } from '../support/clock.js'
import { decode, me, session } from './support.js'

const KEK = Buffer.alloc(32, 0x5a).toString('base64')

t.test('keys persist across restarts: the same key signs and earlier tokens still verify', async (t) => {
  const env = { DATABASE_URL: `file:${join(t.testdir(), 'auth.db')}` }
  const first = await buildApp(testConfig(env))
  const { token, header } = await session(first)
  await first.close()

  const second = await buildTestApp(t, env)
  t.equal(second.keyRing.signingKey(new Date()).kid, header.kid)
  t.equal((await me(second, token)).statusCode, 200)
})

t.test('KEY_ENCRYPTION_KEY: sealed in the database, the same key restarts, a wrong or missing key refuses to start', async (t) => {
  const path = join(t.testdir(), 'auth.db')
  const env = { DATABASE_URL: `file:${path}`, KEY_ENCRYPTION_KEY: KEK }
  const first = await buildApp(testConfig(env))
  const { token } = await session(first)
  const stored = first.sqlite.prepare('select private_key from signing_keys').all() as Array<{ private_key: string }>
  t.equal(stored.length, 1)
  t.match(stored[0]!.private_key, /^enc:v1:/)
  t.notMatch(stored[0]!.private_key, /-----BEGIN|PRIVATE KEY/, 'the stored column is not PEM')
  await first.close()

  const again = await buildTestApp(t, env)
  t.equal((await me(again, token)).statusCode, 200, 'restarted on the same file with the same key')
  await again.close()

  await t.rejects(buildApp(testConfig({ ...env, KEY_ENCRYPTION_KEY: Buffer.alloc(32, 1).toString('base64') })), {
    name: 'KeyProtectionError',
    message: /could not be decrypted: KEY_ENCRYPTION_KEY is not the key it was sealed with/
  })
  await t.rejects(buildApp(testConfig({ ...env, KEY_ENCRYPTION_KEY: undefined })), {
    name: 'KeyProtectionError',
    message: /encrypted at rest; set KEY_ENCRYPTION_KEY/
  })
})

t.test('in production, a missing KEY_ENCRYPTION_KEY is warned about at boot', async (t) => {
  const dir = t.testdir()
  const boot = async (extra: Record<string, string>): Promise<string> => {
    let log = ''
    const logStream = new Writable({ write (chunk, _enc, cb) { log += String(chunk); cb() } })
    const app = await buildApp(loadConfig({ NODE_ENV: 'production', PUBLIC_URL: 'https://auth.example.com', DATABASE_URL: `file:${join(dir, 'auth.db')}`, LOG_LEVEL: 'warn', ...extra }), { logStream })
    await app.close()
    return log
  }
  t.match(await boot({}), /KEY_ENCRYPTION_KEY is not set: private signing keys are stored as plain PEM/)
  t.notMatch(await boot({ KEY_ENCRYPTION_KEY: KEK }), /KEY_ENCRYPTION_KEY/)
})

t.test('the server process refuses to start on a wrong KEY_ENCRYPTION_KEY with a one-line message', async (t) => {
  const path = join(t.testdir(), 'auth.db')
  const app = await buildApp(testConfig({ DATABASE_URL: `file:${path}`, KEY_ENCRYPTION_KEY: KEK }))
  await app.close()
  const root = join(import.meta.dirname, '..', '..')
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: root,
    env: { ...process.env, ...TEST_ENV, DATABASE_URL: `file:${path}`, PORT: '0', KEY_ENCRYPTION_KEY: Buffer.alloc(32, 9).toString('base64') },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let err = ''
  child.stderr.on('data', (c) => { err += String(c) })
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  clearTimeout(timer)
  t.equal(code, 78, 'EX_CONFIG')
  // The refresh-token secret (server_secrets) is sealed too and is opened first.
  t.match(err, /^auth-service: (signing key \S+|server secret \S+ \(server_secrets\)) could not be decrypted: KEY_ENCRYPTION_KEY is not the key it was sealed with\n$/)
})

t.test('two instances on one database file, maintaining at the same moment, rotate once', async (t) => {
  const env = { DATABASE_URL: `file:${join(t.testdir(), 'auth.db')}` }
  const a = await buildTestApp(t, env)
  const b = await buildTestApp(t, env)
  t.equal(a.keyRing.signingKey(new Date()).kid, b.keyRing.signingKey(new Date()).kid, 'the second instance uses the first one\'s key')
  const due = new Date(Date.now() + 30 * 86400_000)
  const [ea, eb] = await Promise.all([a.keyRing.maintain(due), b.keyRing.maintain(due)])
  t.equal([...ea, ...eb].filter((e) => e.type === 'created').length, 1)
  const rows = a.sqlite.prepare('select state from signing_keys order by activates_at').all() as Array<{ state: string }>
  t.same(rows.map((r) => r.state), ['current', 'next'])
  await b.keyRing.reload()
  t.equal(a.keyRing.jwks().etag, b.keyRing.jwks().etag, 'both serve the same key set')
})

t.test('the periodic check rotates on schedule without any call', async (t) => {
  const clock = fakeDate(t, Date.now(), { running: true })
  const lines: string[] = []
  const logStream = new Writable({ write (chunk, _enc, cb) { lines.push(String(chunk)); cb() } })
  const app = await buildApp(testConfig({ LOG_LEVEL: 'info', KEY_CHECK_INTERVAL: '1s', KEY_ROTATION_INTERVAL: '1d', JWKS_MAX_AGE: '1m' }), { logStream })
  t.teardown(() => app.close())
  const first = app.keyRing.signingKey(new Date()).kid
  const boot = lines.length
  t.ok(lines.some((l) => JSON.parse(l).msg === 'signing key created'), 'the first key is logged at boot')
  clock.advance(86400_000)
  // The timer fires within KEY_CHECK_INTERVAL (1 s of real time); wait for its log line.
  const created = await new Promise<Record<string, unknown>>((resolve) => {
    const poll = setInterval(() => {
      const line = lines.slice(boot).map((l) => JSON.parse(l)).find((l) => l.msg === 'signing key created')
      if (line !== undefined) { clearInterval(poll); resolve(line) }
    }, 20)
  })
  t.not(created.kid, first)
  t.equal(Date.parse(String(created.activatesAt)) - Date.now() <= 61_000, true, 'signs one lead time (1 m + 1 s) later')
  t.notMatch(lines.join(''), /PRIVATE|BEGIN|enc:v1/, 'key material never reaches the log')
  const jwks = (await app.inject({ url: '/.well-known/jwks.json' })).json()
  t.equal(jwks.keys.length, 2, 'published at once')
})

t.test('a change of JWT_ALGORITHM keeps every key that signed a valid token until that token expires', async (t) => {
  const clock = fakeDate(t, Date.now(), { running: true })
  const env = {
    DATABASE_URL: `file:${join(t.testdir(), 'auth.db')}`,
    JWKS_MAX_AGE: '5m',
    KEY_CHECK_INTERVAL: '1m'
  }
  const lead = 6 * 60_000
  const es = await buildApp(testConfig({ ...env, JWT_ALGORITHM: 'ES256' }))
  const before = await session(es)
  t.equal(before.header.alg, 'ES256')
  await es.close()

  const rs = await buildTestApp(t, { ...env, JWT_ALGORITHM: 'RS256' })
  const jwks = async (): Promise<string[]> => ((await rs.inject({ url: '/.well-known/jwks.json' })).json().keys as Array<{ alg: string }>).map((k) => k.alg).sort()
  t.same(await jwks(), ['ES256', 'RS256'], 'the RS256 key is published first')
  t.equal((await me(rs, before.token)).statusCode, 200, 'the ES256 token still verifies')
  t.equal(decode((await login(rs)).accessToken).header.alg, 'ES256', 'during the lead time the ES256 key still signs')

  clock.advance(lead)
  await rs.keyRing.maintain(new Date())
  const after = decode((await login(rs)).accessToken)
  t.equal(after.header.alg, 'RS256', 'after the lead time the RS256 key signs')
  t.same(await jwks(), ['ES256', 'RS256'], 'the ES256 key stays published while its tokens live')
  t.equal((await me(rs, before.token)).statusCode, 200, 'and its token still verifies')

  clock.advance(15 * 60_000 - lead + 10_000)
  const expired = await me(rs, before.token)
  t.equal(expired.json().code, 'ACCESS_TOKEN_EXPIRED', 'until it expires')
  clock.advance(lead + 2 * 60_000)
  await rs.keyRing.maintain(new Date())
  t.same(await jwks(), ['RS256'], 'then the ES256 key is removed')
})
