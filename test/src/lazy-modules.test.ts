/**
 * What a start loads: a service on SQLite without REDIS_URL loads neither the PostgreSQL driver,
 * the PostgreSQL repositories (drizzle's pg-core) nor the Redis client, and the WebAuthn and QR-code libraries wait for their first use. Each
 * is loaded where it is needed (plugins/db.ts, src/redis.ts, src/auth/passkeys.ts,
 * src/auth/totp.ts), so a start on the defaults does not pay for them.
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import t from 'tap'

const root = join(import.meta.dirname, '..', '..')
// The settings of test/support/app.ts, inlined: importing it would load the PostgreSQL helpers.
const WATCHED = ['pg', 'drizzle-orm/pg-core', 'ioredis', '@simplewebauthn/server', 'qrcode']

// A child process records every bare specifier it resolves while the app starts, then enrols
// TOTP and asks for passkey options, and prints what it loaded by then.
const script = `
import { registerHooks } from 'node:module'
const seen = new Set()
registerHooks({ resolve (specifier, context, next) { seen.add(specifier); return next(specifier, context) } })
const watched = ${JSON.stringify(WATCHED)}
const loaded = () => watched.filter((m) => seen.has(m))
const { buildApp } = await import('./src/app.ts')
const { loadConfig } = await import('./src/config.ts')
const app = await buildApp(loadConfig(${JSON.stringify({ NODE_ENV: 'test', DATABASE_URL: ':memory:', LOG_LEVEL: 'silent', ARGON2_MEMORY_KIB: '1024', ARGON2_TIME_COST: '1', PUBLIC_URL: 'http://localhost:3000' })}))
const atStart = loaded()
const user = { username: 'alice', password: 'correct horse battery staple' }
await app.inject({ method: 'POST', url: '/api/auth/register', payload: user })
const { accessToken } = (await app.inject({ method: 'POST', url: '/api/auth/login', payload: { ...user, transport: 'body' } })).json()
const headers = { authorization: 'Bearer ' + accessToken }
await app.inject({ method: 'POST', url: '/api/auth/mfa/totp/enroll', headers })
await app.inject({ method: 'POST', url: '/api/auth/passkeys/register/options', headers, payload: {} })
console.log(JSON.stringify({ atStart, afterUse: loaded() }))
await app.close()
`

t.test('a start on SQLite loads neither database driver nor client it does not use', async (t) => {
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, TEST_DATABASE: 'sqlite' }
  })
  t.equal(child.status, 0, child.stderr)
  const { atStart, afterUse } = JSON.parse(child.stdout.trim().split('\n').at(-1)!)
  t.same(atStart, [], 'nothing of pg, drizzle-orm/pg-core, ioredis, @simplewebauthn/server, qrcode at start')
  t.same(afterUse, ['@simplewebauthn/server', 'qrcode'], 'WebAuthn and QR codes once used; still no pg or ioredis')
})
