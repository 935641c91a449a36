/**
 * Starting the real server (src/server.ts) where its database cannot be: the process ends
 * with EX_CONFIG (78) and one line that names the path and DATABASE_URL, never a stack trace.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { ROOT, runToExit } from '../support/process.js'
import { freePort } from '../support/server.js'
import { tmpfs } from '../support/tmpfs.js'

/** The entry point, given a database at `path` it cannot open, ends with 78 and one line naming the path and DATABASE_URL. */
async function refusesDatabase (t: Test, path: string): Promise<void> {
  const { code, stderr } = await runToExit({ NODE_ENV: 'test', LOG_LEVEL: 'silent', DATABASE_URL: `file:${path}` })
  t.equal(code, 78, 'EX_CONFIG')
  const lines = stderr.trim().split('\n')
  t.equal(lines.length, 1, `one line: ${stderr}`)
  t.match(lines[0], 'DATABASE_URL')
  t.match(lines[0], path)
  t.notMatch(stderr, /\n\s+at /, 'no stack trace')
}

t.test('an unwritable database path: exit 78 with one line naming the path and DATABASE_URL', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'auth-startup-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // A regular file where the data directory should be: no process, root included, can create it.
  const blocker = join(dir, 'not-a-directory')
  writeFileSync(blocker, '')
  const path = join(blocker, 'auth.db')
  await refusesDatabase(t, path)
})

t.test('a read-only file system: exit 78 with one line naming the path and DATABASE_URL', async (t) => {
  const dir = tmpfs(t, 'auth-startup-ro-', 'ro,size=1m')
  if (dir === null) return
  const path = join(dir, 'auth.db')
  await refusesDatabase(t, path)
})

t.test('a REDIS_URL where no Redis answers: exit 69 with one line naming REDIS_URL and the address, no password, no stack trace', async (t) => {
  const port = await freePort()
  const { code, stderr } = await runToExit({ NODE_ENV: 'test', LOG_LEVEL: 'silent', DATABASE_URL: ':memory:', REDIS_URL: `redis://user:hunter2hunter2@127.0.0.1:${port}` })
  t.equal(code, 69, 'EX_UNAVAILABLE')
  const lines = stderr.trim().split('\n')
  t.equal(lines.length, 1, `one line: ${stderr}`)
  t.match(lines[0], `REDIS_URL: cannot reach Redis at redis://127.0.0.1:${port}`)
  t.notMatch(stderr, /hunter2/, 'the password is not repeated')
  t.notMatch(stderr, /\n\s+at /, 'no stack trace')
})

t.test('a REDIS_URL that is not redis:// or rediss://: exit 78 with one line naming REDIS_URL', async (t) => {
  const { code, stderr } = await runToExit({ NODE_ENV: 'test', LOG_LEVEL: 'silent', DATABASE_URL: ':memory:', REDIS_URL: 'http://user:hunter2hunter2@127.0.0.1:6379' })
  t.equal(code, 78, 'EX_CONFIG')
  t.match(stderr.trim(), /^auth-service: REDIS_URL: the scheme http: is not allowed/)
  t.equal(stderr.trim().split('\n').length, 1)
  t.notMatch(stderr, /hunter2/)
})

t.test('a SIGTERM while the service is still starting ends it at once (exit 143), as a supervisor expects', async (t) => {
  // A Redis that accepts connections and never answers holds the start (src/redis.ts waits
  // for its first reply) long enough to send the signal meanwhile.
  const silent = createServer(() => {})
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { silent.close() })
  const port = (silent.address() as AddressInfo).port
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'server.ts')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', HOST: '127.0.0.1', PORT: '0', NODE_ENV: 'test', LOG_LEVEL: 'info', DATABASE_URL: ':memory:', REDIS_URL: `redis://127.0.0.1:${port}` },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  t.teardown(() => { clearTimeout(timer) })
  // Signalled once the start is under way (the first connection reaches the silent Redis).
  await once(silent, 'connection')
  child.kill('SIGTERM')
  const [code, signal] = await exited
  // Without a handler the default action ends a process by the signal, but PID 1 in a
  // container ignores it: a handler that exits is what makes `podman stop` work during a start.
  t.equal(signal, null, 'ended by its own handler, not by the default action')
  t.equal(code, 143, '128 + SIGTERM')
  t.match(stdout, /stopping during start/)
})
