/**
 * `npm test`: the whole suite twice, the same files both times: on SQLite, then on a throwaway
 * PostgreSQL cluster (test/support/postgres-cluster.ts) with TEST_DATABASE=postgres and
 * TEST_POSTGRES_URL set to its superuser URL. Arguments go to tap in both passes
 * (`npm test -- test/routes/`). `TEST_PASSES=sqlite` or `TEST_PASSES=postgres` runs one pass.
 *
 * Invariants:
 * - Exit code 0 only when every pass that ran passed, and, with CI set, both ran.
 * - Without PostgreSQL binaries and without CI, the PostgreSQL pass is SKIPPED, and the last
 *   lines say so and why; with CI set, that is a failure.
 * - The PostgreSQL pass fails when the tests created no database, schema or table on the cluster
 *   (read from the server's DDL log): the suite then did not run on PostgreSQL at all.
 * - The last lines are one summary per pass, `tests (<db>): N passed, N failed, N skipped`,
 *   which .ci/run reads.
 */
import { spawn } from 'node:child_process'
import { realpathSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createdObjects, findPostgresBin, startPostgresCluster, type PostgresCluster } from '../test/support/postgres-cluster.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const TAP = realpathSync(join(ROOT, 'node_modules', '.bin', 'tap'))
const args = process.argv.slice(2)
const ci = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false' && process.env.CI !== '0'
const passes = (process.env.TEST_PASSES ?? 'sqlite,postgres').split(',').map((p) => p.trim()).filter((p) => p !== '')
for (const p of passes) {
  if (p !== 'sqlite' && p !== 'postgres') {
    console.error(`TEST_PASSES: unknown pass "${p}" (sqlite, postgres)`)
    process.exit(2)
  }
}

interface Outcome { line: string, ok: boolean }
const summaries: Outcome[] = []
let child: ReturnType<typeof spawn> | undefined
let cluster: PostgresCluster | undefined

/** Runs tap with `env`; echoes its output and returns its exit code and its `# { total: … }` counts. */
async function tap (env: NodeJS.ProcessEnv): Promise<{ code: number, counts: Record<string, number> | undefined }> {
  return await new Promise((resolve) => {
    child = spawn(process.execPath, [TAP, ...args], { cwd: ROOT, env, stdio: ['inherit', 'pipe', 'inherit'] })
    let counts: Record<string, number> | undefined
    let rest = ''
    child.stdout!.on('data', (chunk: Buffer) => {
      process.stdout.write(chunk)
      const lines = (rest + chunk.toString('utf8')).split('\n')
      rest = lines.pop() ?? ''
      for (const line of lines) {
        const m = /^# \{ (total: \d+.*) \}\s*$/.exec(line)
        if (m !== null) counts = Object.fromEntries(m[1]!.split(', ').map((kv) => kv.split(': ')).map(([k, v]) => [k!, Number(v)]))
      }
    })
    child.on('close', (code, signal) => {
      child = undefined
      resolve({ code: code ?? (signal !== null ? 128 : 1), counts })
    })
  })
}

function summary (db: string, code: number, counts: Record<string, number> | undefined, note = '', refusal?: string): Outcome {
  if (counts === undefined) return { line: `tests (${db}): FAILED, tap printed no summary (exit ${code})${note}`, ok: false }
  const ok = code === 0 && (counts.fail ?? 0) === 0 && (counts.pass ?? 0) > 0 && refusal === undefined
  const verdict = ok ? '' : ` - FAILED: ${refusal ?? `exit ${code}`}`
  return { line: `tests (${db}): ${counts.pass ?? 0} passed, ${counts.fail ?? 0} failed, ${counts.skip ?? 0} skipped${note}${verdict}`, ok }
}

/** The environment of a pass: the caller's, without a database choice of its own. */
function passEnv (extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env }
  delete env.TEST_DATABASE
  delete env.TEST_POSTGRES_URL
  return { ...env, ...extra }
}

async function finish (code: number): Promise<never> {
  if (cluster !== undefined) await cluster.stop()
  console.log('')
  for (const s of summaries) console.log(s.line)
  process.exit(code)
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    child?.kill(signal)
    summaries.push({ line: `tests: interrupted by ${signal}`, ok: false })
    void finish(130)
  })
}

if (passes.includes('sqlite')) {
  console.log('\n=== tests on SQLite\n')
  const { code, counts } = await tap(passEnv({}))
  summaries.push(summary('sqlite', code, counts))
}

if (passes.includes('postgres')) {
  const found = findPostgresBin()
  if (!('bin' in found)) {
    summaries.push(ci
      ? { line: `tests (postgres): FAILED, not run: ${found.missing} (CI is set: the PostgreSQL pass must run)`, ok: false }
      : { line: `tests (postgres): SKIPPED, not run: ${found.missing}`, ok: true })
  } else {
    console.log(`\n=== tests on PostgreSQL (${found.bin})\n`)
    try {
      cluster = await startPostgresCluster({ bin: found.bin })
    } catch (err) {
      summaries.push({ line: `tests (postgres): FAILED, the throwaway cluster did not start: ${(err as Error).message}`, ok: false })
    }
    if (cluster !== undefined) {
      const { code, counts } = await tap(passEnv({ TEST_DATABASE: 'postgres', TEST_POSTGRES_URL: cluster.url }))
      const made = createdObjects(cluster.logFile)
      const note = ` (on the cluster: ${made.databases} databases, ${made.schemas} schemas, ${made.tables} tables created)`
      const nothing = made.databases + made.schemas + made.tables === 0
        ? 'the tests created no database, schema or table on PostgreSQL: with TEST_DATABASE=postgres they did not use it'
        : undefined
      const outcome = summary('postgres', code, counts, note, nothing)
      summaries.push(outcome)
    }
  }
}

await finish(summaries.every((s) => s.ok) ? 0 : 1)
