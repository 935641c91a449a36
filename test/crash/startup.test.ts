/**
 * Starting the real server (src/server.ts) where its database cannot be: the process ends
 * with EX_CONFIG (78) and one line that names the path and DATABASE_URL, never a stack trace.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { runToExit } from '../support/process.js'

async function start (env: Record<string, string>): Promise<{ code: number | null, stderr: string }> {
  return await runToExit({ NODE_ENV: 'test', LOG_LEVEL: 'silent', ...env })
}

t.test('an unwritable database path: exit 78 with one line naming the path and DATABASE_URL', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'auth-startup-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // A regular file where the data directory should be: no process, root included, can create it.
  const blocker = join(dir, 'not-a-directory')
  writeFileSync(blocker, '')
  const path = join(blocker, 'auth.db')
  const { code, stderr } = await start({ DATABASE_URL: `file:${path}` })
  t.equal(code, 78, 'EX_CONFIG')
  const lines = stderr.trim().split('\n')
  t.equal(lines.length, 1, `one line: ${stderr}`)
  t.match(lines[0], 'DATABASE_URL')
  t.match(lines[0], path)
  t.notMatch(stderr, /\n\s+at /, 'no stack trace')
})

t.test('a read-only file system: exit 78 with one line naming the path and DATABASE_URL', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'auth-startup-ro-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', dir], { stdio: 'pipe' })
  } catch (err) {
    const why = (err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message
    if (process.env.CI === 'true') t.fail(`cannot mount a read-only tmpfs: ${why}`)
    else t.plan(0, `cannot mount a read-only tmpfs (needs root or a mount namespace): ${why}`)
    return
  }
  t.teardown(() => { execFileSync('umount', ['-l', dir]) })
  const path = join(dir, 'auth.db')
  const { code, stderr } = await start({ DATABASE_URL: `file:${path}` })
  t.equal(code, 78, 'EX_CONFIG')
  const lines = stderr.trim().split('\n')
  t.equal(lines.length, 1, `one line: ${stderr}`)
  t.match(lines[0], 'DATABASE_URL')
  t.match(lines[0], path)
  t.notMatch(stderr, /\n\s+at /, 'no stack trace')
})
