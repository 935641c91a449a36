/**
 * `keys revoke <kid>` and `keys rotate` against the database file of a really running service
 * process: a revoked key leaves the JWKS and verification, the tokens it signed are refused, and
 * the running service signs with another key within seconds; a rotated key is published within
 * seconds, not at the next KEY_CHECK_INTERVAL. Waits poll with a bounded deadline.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import t from 'tap'
import { runKeysCommand } from '../../src/cli/keys.js'
import { startServer, ROOT } from '../support/process.js'
import { bearer, buildTestApp, login, PASSWORD, register, TEST_ENV } from '../support/app.js'
import { decode } from './support.js'

/** Runs `npm run keys -- ...` as an operator would, in its own process. */
async function keysCli (args: string[], env: Record<string, string>): Promise<{ code: number | null, out: string, err: string }> {
  const child = spawn('npm', ['run', '--silent', 'keys', '--', ...args], { cwd: ROOT, env: { ...process.env, ...TEST_ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (c) => { out += String(c) })
  child.stderr.on('data', (c) => { err += String(c) })
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  clearTimeout(timer)
  return { code, out, err }
}

/** Polls `check` until it answers a value, or fails after `ms`. */
async function eventually<T> (what: string, check: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

t.test('keys revoke and keys rotate take effect on a running service within seconds', async (t) => {
  const env = { DATABASE_URL: `file:${join(t.testdir(), 'auth.db')}` }
  const server = await startServer({ ...TEST_ENV, ...env, LOG_LEVEL: 'info' })
  t.teardown(async () => { await server.kill('SIGTERM') })
  const post = async (path: string, body: unknown): Promise<Response> => await fetch(`${server.base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const loginToken = async (): Promise<string> => ((await (await post('/api/auth/login', { username: 'alice', password: PASSWORD, transport: 'body' })).json()) as { accessToken: string }).accessToken
  const me = async (token: string): Promise<Response> => await fetch(`${server.base}/api/auth/me`, { headers: { authorization: `Bearer ${token}` } })
  const jwksKids = async (): Promise<string[]> => ((await (await fetch(`${server.base}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid)

  t.equal((await post('/api/auth/register', { username: 'alice', password: PASSWORD })).status, 201)
  const before = await loginToken()
  const leaked = decode(before).header.kid as string
  t.equal((await me(before)).status, 200)

  // A scheduled rotation: the running service publishes the new key within seconds.
  const rotated = await keysCli(['rotate', '--json'], env)
  t.equal(rotated.code, 0, rotated.err)
  const next = (JSON.parse(rotated.out).events as Array<{ type: string, kid: string }>).find((e) => e.type === 'created')!.kid
  await eventually('the rotated key is in the JWKS', async () => (await jwksKids()).includes(next) ? true : undefined)
  t.pass('the rotated key is published by the running service')
  const text = await keysCli(['rotate'], env)
  t.notMatch(text.out, /published now/, 'rotate does not claim what it cannot know')

  // The leak: revoke the signing key.
  const revoked = await keysCli(['revoke', leaked], env)
  t.equal(revoked.code, 0, revoked.err)
  t.match(revoked.out, new RegExp(`revoked ${leaked}`))
  await eventually('the revoked kid leaves the JWKS', async () => (await jwksKids()).includes(leaked) ? undefined : true)
  t.pass('the JWKS no longer holds the revoked kid')
  const refused = await me(before)
  t.equal(refused.status, 401, 'a token it signed is refused')
  t.equal(((await refused.json()) as { code: string }).code, 'ACCESS_TOKEN_INVALID')
  const after = await eventually('new logins are signed with another key', async () => {
    const token = await loginToken()
    return decode(token).header.kid !== leaked ? token : undefined
  })
  t.equal((await me(after)).status, 200, 'and those tokens verify')
  t.equal((await keysCli(['revoke', leaked], env)).code, 1, 'revoking it again: no such key')
})

t.test('revoking the only usable key makes a new one sign in the same step', async (t) => {
  const env = { DATABASE_URL: `file:${join(t.testdir(), 'auth.db')}` }
  const app = await buildTestApp(t, env)
  const only = app.keyRing.signingKey(new Date()).kid
  let out = ''
  const code = await runKeysCommand(['revoke', only, '--json'], { env: { ...TEST_ENV, ...env }, stdout: (s) => { out += s } })
  t.equal(code, 0)
  const result = JSON.parse(out) as { events: Array<{ type: string, kid: string }>, keys: Array<{ kid: string, signing: boolean }> }
  t.same(result.events.map((e) => e.type).slice(0, 1), ['revoked'])
  t.ok(result.events.some((e) => e.type === 'created'), 'a new key is created')
  t.same(result.keys.map((k) => k.kid).includes(only), false, 'the revoked key is gone')
  t.equal(result.keys.filter((k) => k.signing).length, 1, 'and exactly one key signs')
  const audited = (app.sqlite.prepare("SELECT detail FROM audit_events WHERE type = 'key_rotated'").pluck().all() as string[]).map(String)
  t.ok(audited.some((d) => d.includes('"revoked"') && d.includes(only)), 'the revocation is in the audit log')
  const unknown = await runKeysCommand(['revoke', 'no-such-kid'], { env: { ...TEST_ENV, ...env }, stderr: () => {}, stdout: () => {} })
  t.equal(unknown, 1, 'an unknown kid is refused')
  t.equal(await runKeysCommand(['revoke'], { env: { ...TEST_ENV, ...env }, stderr: () => {}, stdout: () => {} }), 64, 'a kid is required')
})

t.test('revoking a retired key withdraws it without touching the signing key', async (t) => {
  const env = { DATABASE_URL: `file:${join(t.testdir(), 'auth.db')}` }
  const app = await buildTestApp(t, env)
  await register(app)
  const old = (await login(app)).accessToken
  const oldKid = decode(old).header.kid as string
  t.equal(await runKeysCommand(['rotate', '--immediate'], { env: { ...TEST_ENV, ...env }, stdout: () => {} }), 0)
  await app.keyRing.refresh()
  const signing = app.keyRing.signingKey(new Date()).kid
  t.not(signing, oldKid)
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(old) })).statusCode, 200, 'a retired key still verifies its tokens')

  let out = ''
  t.equal(await runKeysCommand(['revoke', oldKid, '--json'], { env: { ...TEST_ENV, ...env }, stdout: (s) => { out += s } }), 0)
  t.same((JSON.parse(out) as { events: Array<{ type: string }> }).events.map((e) => e.type), ['revoked'], 'nothing else changes')
  t.equal(await app.keyRing.refresh(), true, 'the running app sees the change')
  t.equal(app.keyRing.signingKey(new Date()).kid, signing, 'the signing key is the same')
  const refused = await app.inject({ url: '/api/auth/me', headers: bearer(old) })
  t.equal(refused.statusCode, 401)
  t.equal(refused.json().code, 'ACCESS_TOKEN_INVALID', 'the retired key\'s tokens are refused')
  t.equal(await app.keyRing.refresh(), false, 'no change, no reload')
})
