/**
 * The key CLI (`npm run keys -- list | rotate [--immediate]`) against the database file a
 * running service uses.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import t from 'tap'
import { formatKeyList, listKeys, rotateKeys, runKeysCommand } from '../../src/cli/keys.js'
import { buildTestApp, login, testConfig, TEST_ENV } from '../support/app.js'
import { decode, HS_SECRET, me, session } from './support.js'

async function run (argv: string[], env: Record<string, string | undefined>): Promise<{ code: number, out: string, err: string }> {
  let out = ''
  let err = ''
  const code = await runKeysCommand(argv, { env: { ...TEST_ENV, ...env }, stdout: (s) => { out += s + '\n' }, stderr: (s) => { err += s + '\n' } })
  return { code, out, err }
}

t.test('list and rotate on the database of a running service', async (t) => {
  const env = { DATABASE_URL: `file:${join(t.testdir(), 'auth.db')}` }
  const app = await buildTestApp(t, env)
  const before = await session(app)
  const first = before.header.kid as string

  const listed = await run(['list'], env)
  t.equal(listed.code, 0)
  t.match(listed.out, new RegExp(`${first}\\s+ES256\\s+current \\(signing\\)`))
  t.match(listed.out, /plain PEM/)

  const scheduled = await run(['rotate', '--json'], env)
  t.equal(scheduled.code, 0, scheduled.err)
  const result = JSON.parse(scheduled.out)
  const created = result.events.find((e: { type: string }) => e.type === 'created')
  t.ok(created, 'a new key')
  t.same(result.keys.map((k: { state: string, signing: boolean }) => [k.state, k.signing]), [['current', true], ['next', false]])
  t.ok(Date.parse(created.activatesAt) - Date.now() > 3_900_000 - 60_000, 'signs after JWKS_MAX_AGE + KEY_CHECK_INTERVAL (1 h 5 m)')

  const again = await run(['rotate'], env)
  t.equal(again.code, 0)
  t.match(again.out, /a next key is already scheduled/, 'rotating twice does not make two keys')

  const immediate = await run(['rotate', '--immediate'], env)
  t.equal(immediate.code, 0, immediate.err)
  t.match(immediate.out, /signs from now/)
  t.match(immediate.out, new RegExp(`retired ${first}: still published and accepted until`))
  const now = (await listKeys(testConfig(env))).find((k) => k.signing)!
  t.not(now.kid, first)

  // The running server: its periodic check (run here by hand) picks the new key up.
  await app.keyRing.maintain(new Date())
  t.equal(decode((await login(app)).accessToken).header.kid, now.kid, 'new tokens carry the new kid')
  t.equal((await me(app, before.token)).statusCode, 200, 'the token of the old key still verifies')
  t.match(formatKeyList(await listKeys(testConfig(env))), /retired/)
})

t.test('the CLI refuses what it cannot do, with an exit code and a message', async (t) => {
  const dir = t.testdir()
  const missing = await run(['list'], { DATABASE_URL: `file:${join(dir, 'none.db')}` })
  t.equal(missing.code, 1)
  t.match(missing.err, /no database at .*none\.db; start the service once/)

  const memory = await run(['rotate'], { DATABASE_URL: ':memory:' })
  t.equal(memory.code, 1)
  t.match(memory.err, /:memory:/)

  t.equal((await run([], {})).code, 64, 'no command: usage')
  t.equal((await run(['spin'], {})).code, 64)
  t.equal((await run(['rotate', '--now'], {})).code, 64, 'an unknown option is refused, not ignored')
  const help = await run(['--help'], {})
  t.equal(help.code, 0)
  t.match(help.out, /rotate --immediate/)

  const badConfig = await run(['list'], { JWKS_MAX_AGE: 'soon' })
  t.equal(badConfig.code, 78)
  t.match(badConfig.err, /JWKS_MAX_AGE/)

  const env = { DATABASE_URL: `file:${join(dir, 'auth.db')}`, KEY_ENCRYPTION_KEY: Buffer.alloc(32, 3).toString('hex') }
  const app = await buildTestApp(t, env)
  await app.close()
  const listed = await run(['list'], { ...env, KEY_ENCRYPTION_KEY: undefined })
  t.equal(listed.code, 0, 'listing needs no key')
  t.match(listed.out, /sealed/)
  const wrong = await run(['rotate'], { ...env, KEY_ENCRYPTION_KEY: Buffer.alloc(32, 4).toString('hex') })
  t.equal(wrong.code, 1)
  t.match(wrong.err, /KEY_ENCRYPTION_KEY is not the key it was sealed with/)
  t.equal((await listKeys(testConfig(env))).length, 1, 'nothing was written')

  // A kid is base64url: one in 64 starts with a dash, and `revoke` must take it as the key id.
  const dashed = await run(['revoke', '-9nBhpkaW30izLJJu48BpJbyajlKwGIb_B2pIiKsyaE'], env)
  t.equal(dashed.code, 1, `a kid that starts with a dash is a kid, not an option (${dashed.err.trim().split('\n')[0]!})`)
  t.match(dashed.err, /no signing key -9nBhpkaW30izLJJu48BpJbyajlKwGIb_B2pIiKsyaE/)
  const doubled = await run(['revoke', '--json', '--', '--nBhpkaW30izLJJu48BpJbyajlKwGIb_B2pIiKsyaE'], env)
  t.equal(doubled.code, 1, 'after --, one that starts with two dashes is a kid too')
  t.match(doubled.err, /no signing key --nBhpkaW30izLJJu48BpJbyajlKwGIb_B2pIiKsyaE/)
  t.equal((await run(['revoke', '--nBhpkaW30izLJJu48BpJbyajlKwGIb_B2pIiKsyaE'], env)).code, 64, 'before --, it is an unknown option')

  const hs = await run(['rotate'], { ...env, JWT_ALGORITHM: 'HS256', JWT_SECRET: HS_SECRET })
  t.equal(hs.code, 1)
  t.match(hs.err, /HS256/)
  await t.rejects(rotateKeys(testConfig({ ...env, JWT_ALGORITHM: 'HS256', JWT_SECRET: HS_SECRET })), { name: 'KeysCommandError' })
})

t.test('`npm run keys -- list` runs as a command', async (t) => {
  const env = { DATABASE_URL: `file:${join(t.testdir(), 'auth.db')}` }
  const app = await buildTestApp(t, env)
  const kid = app.keyRing.signingKey(new Date()).kid
  await app.close()
  const child = spawn('npm', ['run', '--silent', 'keys', '--', 'list', '--json'], {
    cwd: join(import.meta.dirname, '..', '..'),
    env: { ...process.env, ...TEST_ENV, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (c) => { out += String(c) })
  child.stderr.on('data', (c) => { err += String(c) })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  t.equal(code, 0, err)
  t.same(JSON.parse(out).map((k: { kid: string }) => k.kid), [kid])
})
