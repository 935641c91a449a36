/**
 * `npm test` (scripts/test.ts) runs the suite on SQLite and again on a throwaway PostgreSQL
 * cluster, and its exit code and last lines say how each pass went. Run here on two small tap
 * fixtures (test/fixtures/test-runner/), with a real cluster: a pass that never touched
 * PostgreSQL fails, a failure on either pass fails the run, and a machine without PostgreSQL
 * skips that pass out loud (or fails, under CI).
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import t from 'tap'
import { findPostgresBin } from '../support/postgres-cluster.js'
import { ROOT } from '../support/process.js'

t.setTimeout(300_000)
const FIXTURES = 'test/fixtures/test-runner'

/** Runs `npm test -- <files>` as a user would, with none of this tap run's own variables. */
async function runner (files: string[], env: Record<string, string> = {}): Promise<{ code: number | null, out: string, summary: string[] }> {
  const base: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !/^(TAP|_TAPJS|TEST_|CI$|POSTGRES_BIN$|FIXTURE_)/.test(k)) base[k] = v
  }
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'test.ts'), ...files.map((f) => join(FIXTURES, f))], {
    cwd: ROOT, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
  child.stderr.setEncoding('utf8').on('data', (c: string) => { out += c })
  const timer = setTimeout(() => child.kill('SIGKILL'), 240_000)
  const [code] = await once(child, 'close') as [number | null]
  clearTimeout(timer)
  return { code, out, summary: out.split('\n').filter((l) => l.startsWith('tests (')) }
}

const hasPostgres = 'bin' in findPostgresBin()

t.test('both passes run the same files; the PostgreSQL one on the cluster it started', { skip: !hasPostgres && 'no PostgreSQL binaries' }, async (t) => {
  const r = await runner(['uses-database.ts'])
  t.equal(r.code, 0, 'runner output', { output: r.out })
  t.same(r.summary, [
    'tests (sqlite): 1 passed, 0 failed, 0 skipped',
    'tests (postgres): 1 passed, 0 failed, 0 skipped (on the cluster: 1 databases, 0 schemas, 0 tables created)'
  ], 'runner output', { output: r.out })
})

t.test('a PostgreSQL pass whose tests never touched PostgreSQL fails', { skip: !hasPostgres && 'no PostgreSQL binaries' }, async (t) => {
  const r = await runner(['ignores-database.ts'])
  t.equal(r.code, 1, 'runner output', { output: r.out })
  t.equal(r.summary[0], 'tests (sqlite): 1 passed, 0 failed, 0 skipped', 'runner output', { output: r.out })
  t.match(r.summary[1], /^tests \(postgres\): 1 passed, 0 failed, 0 skipped \(on the cluster: 0 databases, 0 schemas, 0 tables created\) - FAILED: the tests created no database, schema or table on PostgreSQL/, 'runner output', { output: r.out })
})

t.test('a failure on the PostgreSQL pass alone fails the run', { skip: !hasPostgres && 'no PostgreSQL binaries' }, async (t) => {
  const r = await runner(['uses-database.ts'], { FIXTURE_FAIL_ON_POSTGRES: '1' })
  t.equal(r.code, 1, 'runner output', { output: r.out })
  t.equal(r.summary[0], 'tests (sqlite): 1 passed, 0 failed, 0 skipped', 'runner output', { output: r.out })
  t.match(r.summary[1], /^tests \(postgres\): 1 passed, 1 failed, 0 skipped .* - FAILED: exit 1$/, 'runner output', { output: r.out })
})

t.test('without PostgreSQL: SQLite runs and the PostgreSQL pass is SKIPPED, out loud; under CI that fails', async (t) => {
  const missing = { POSTGRES_BIN: join(ROOT, 'no-such-postgres') }
  const local = await runner(['ignores-database.ts'], missing)
  t.equal(local.code, 0, 'runner output', { output: local.out })
  t.equal(local.summary[0], 'tests (sqlite): 1 passed, 0 failed, 0 skipped', 'runner output', { output: local.out })
  t.match(local.summary[1], /^tests \(postgres\): SKIPPED, not run: POSTGRES_BIN=.*no-such-postgres holds no initdb and pg_ctl$/, 'runner output', { output: local.out })

  const ci = await runner(['ignores-database.ts'], { ...missing, CI: 'true', TEST_PASSES: 'postgres' })
  t.equal(ci.code, 1, 'runner output', { output: ci.out })
  t.match(ci.summary, [/^tests \(postgres\): FAILED, not run: .* \(CI is set: the PostgreSQL pass must run\)$/], 'runner output', { output: ci.out })
})
