/**
 * The two packages as a user gets them: `npm pack` each workspace (which builds it), install the
 * tarballs into a scratch app in a temporary directory (dependencies from npm's cache, or the
 * registry when the cache lacks them), and use them from there, against a really listening service:
 * the installed verifier accepts a token the service issued and refuses a tampered one; the
 * installed client signs in, calls /me with its access token, and reports a refusal as AuthError.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { ROOT } from '../support/process.js'
import { PASSWORD, register } from '../support/app.js'
import { AUDIENCE, ISSUER, startService } from '../interop/support.js'
import { session } from '../keys/support.js'

const run = promisify(execFile)
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'

const scratch = mkdtempSync(join(tmpdir(), 'auth-packages-'))
t.teardown(() => rmSync(scratch, { recursive: true, force: true }))
const app = join(scratch, 'app')

/** Packs a workspace into the scratch directory; returns the tarball's path. */
async function pack (workspace: string): Promise<string> {
  const { stdout } = await run(npm, ['pack', '--json', '--pack-destination', scratch], { cwd: join(ROOT, 'packages', workspace), timeout: 120_000 })
  const [info] = JSON.parse(stdout.slice(stdout.indexOf('['))) as Array<{ filename: string, files: Array<{ path: string }> }>
  return join(scratch, info!.filename.replace(/^@/, '').replace('/', '-'))
}

/** Runs an ES module in the scratch app (so imports resolve from its node_modules only). */
async function runInApp (name: string, source: string, env: Record<string, string>): Promise<unknown> {
  writeFileSync(join(app, name), source)
  const { stdout } = await run(process.execPath, [name], { cwd: app, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, timeout: 60_000 })
  return JSON.parse(stdout)
}

t.before(async () => {
  const tarballs = [await pack('verifier'), await pack('client')]
  rmSync(app, { recursive: true, force: true })
  await run('mkdir', ['-p', app])
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'scratch-app', private: true, type: 'module' }))
  // fastify is the verifier's peer dependency: the consuming app brings its own.
  await run(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', ...tarballs, 'fastify@5'], { cwd: app, timeout: 300_000 })
})

t.test('the tarballs hold the build, the types and the README, and no sources or tests', async (t) => {
  for (const name of ['verifier', 'client']) {
    const dir = join(app, 'node_modules', '@auth-service', name)
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name: string, exports: Record<string, { types: string, default: string }> }
    t.equal(manifest.name, `@auth-service/${name}`)
    const entry = manifest.exports['.']!
    t.ok(readFileSync(join(dir, entry.default), 'utf8').length > 0, `${name}: ${entry.default}`)
    t.ok(readFileSync(join(dir, entry.types), 'utf8').length > 0, `${name}: ${entry.types}`)
    t.match(readFileSync(join(dir, 'README.md'), 'utf8'), `npm install @auth-service/${name}`, `${name}: the README says how to install it`)
    const { stdout } = await run('find', [dir, '-name', '*.ts', '-not', '-name', '*.d.ts'])
    t.equal(stdout, '', `${name}: no TypeScript sources`)
  }
})

t.test('the installed verifier accepts a token the service issued and refuses a tampered one', async (t) => {
  const service = await startService(t)
  const genuine = await session(service.app)
  const [h, p, s] = genuine.token.split('.')
  const tampered = `${h}.${Buffer.from(JSON.stringify({ ...genuine.payload, roles: ['admin'] })).toString('base64url')}.${s}`
  t.not(tampered.split('.')[1], p)
  const result = await runInApp('verify.mjs', `
import Fastify from 'fastify'
import verifier from '@auth-service/verifier'
const app = Fastify()
await app.register(verifier, { issuer: process.env.ISSUER, audience: process.env.AUDIENCE, jwksUrl: process.env.JWKS_URL })
app.get('/whoami', { onRequest: app.authenticate }, async (request) => ({ sub: request.user.sub }))
const out = {}
for (const name of ['GENUINE', 'TAMPERED']) {
  const res = await app.inject({ url: '/whoami', headers: { authorization: 'Bearer ' + process.env[name] } })
  out[name] = { status: res.statusCode, body: res.json() }
}
await app.close()
console.log(JSON.stringify(out))
`, { ISSUER, AUDIENCE, JWKS_URL: service.jwksUrl, GENUINE: genuine.token, TAMPERED: tampered })
  t.same(result, {
    GENUINE: { status: 200, body: { sub: genuine.payload.sub } },
    TAMPERED: { status: 401, body: { statusCode: 401, code: 'ACCESS_TOKEN_INVALID', message: 'The access token is invalid' } }
  })
})

t.test('the installed client signs in, calls /me with its access token and reports refusals as AuthError', async (t) => {
  const service = await startService(t)
  await register(service.app, 'carol')
  const result = await runInApp('client.mjs', `
import { AuthError, createAuthClient } from '@auth-service/client'
const auth = createAuthClient({ baseUrl: process.env.BASE })
const changes = []
auth.onChange((c) => changes.push(c))
const out = {}
try { await auth.login('carol', 'wrong password, surely') } catch (err) {
  out.refused = { isAuthError: err instanceof AuthError, status: err.status, code: err.code }
}
await auth.login('carol', process.env.PASSWORD)
out.authenticated = auth.authenticated
const me = await auth.fetch('/api/auth/me')
out.me = { status: me.status, username: (await me.json()).username }
out.changes = changes
// The client's BroadcastChannel (tabs talk over it) keeps Node running: exit once written.
process.stdout.write(JSON.stringify(out), () => process.exit(0))
`, { BASE: service.origin, PASSWORD })
  t.same(result, {
    refused: { isAuthError: true, status: 401, code: 'INVALID_CREDENTIALS' },
    authenticated: true,
    me: { status: 200, username: 'carol' },
    changes: [{ authenticated: true, reason: 'login' }]
  })
})
