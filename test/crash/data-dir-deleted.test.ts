/**
 * The data directory deleted under a running service (an operator's `rm -rf`, a volume
 * detached): SQLite keeps writing into the unlinked file, and a restart would start empty.
 * The real server (src/server.ts) must notice by itself, without a request, that its database
 * file is gone, answer /ready with 503, and refuse every write with a 503 JSON error and
 * Retry-After instead of acknowledging it.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { serverEnv, startServer, type ServerProcess } from '../support/process.js'

const PASSWORD = 'deleted data passphrase 2026'

async function post (base: string, path: string, body: unknown): Promise<{ status: number, json: any, retryAfter: string | null }> {
  const res = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const text = await res.text()
  return { status: res.status, json: text === '' ? undefined : JSON.parse(text), retryAfter: res.headers.get('retry-after') }
}

t.test('data directory deleted while running: noticed without a request, /ready 503, writes refused with 503', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'auth-deleted-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const data = join(dir, 'data')
  let server: ServerProcess | undefined = await startServer(serverEnv(join(data, 'auth.db')))
  t.teardown(async () => { await server?.kill() })
  const { base } = server

  t.equal((await post(base, '/api/auth/register', { username: 'alice', password: PASSWORD })).status, 201)
  t.equal((await fetch(`${base}/ready`)).status, 200)

  rmSync(data, { recursive: true, force: true })
  // The periodic check finds it on its own (bounded wait; no request is made meanwhile).
  let noticed = false
  for (let i = 0; i < 200 && !noticed; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    noticed = /database file is gone/.test(server.stdout())
  }
  t.ok(noticed, 'the service logged that its database file is gone, before any request')

  const ready = await fetch(`${base}/ready`)
  t.equal(ready.status, 503, '/ready: 503')
  t.equal(((await ready.json()) as { code: string }).code, 'SERVICE_UNAVAILABLE')
  const reg = await post(base, '/api/auth/register', { username: 'bob', password: PASSWORD })
  t.equal(reg.status, 503, 'a registration is refused')
  t.equal(reg.json?.code, 'DATABASE_UNAVAILABLE')
  t.ok(Number(reg.retryAfter) > 0, 'with Retry-After')
  const login = await post(base, '/api/auth/login', { username: 'alice', password: PASSWORD, transport: 'body' })
  t.equal(login.status, 503, 'a login is refused')
  t.equal(login.json?.code, 'DATABASE_UNAVAILABLE')
  t.equal((await fetch(`${base}/health`)).status, 200, 'the process is alive')

  const exit = await server.kill('SIGTERM')
  server = undefined
  t.equal(exit.code, 0, 'and still stops cleanly')
})
