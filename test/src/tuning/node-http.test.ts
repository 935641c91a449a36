/**
 * What the service keeps in memory that it does not use. Each check runs in a fresh process,
 * since the test runner itself loads much more than the service does.
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'

t.test('building and running the app does not load Node\'s bundled fetch (undici)', async (t) => {
  const run = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../../support/node-http-probe.ts', import.meta.url))], { encoding: 'utf8', timeout: 60_000 })
  t.equal(run.status, 0, run.stderr)
  const loaded = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as string[]
  t.ok(loaded.includes('http'), 'node:http is loaded')
  // An ESM `import ... from 'node:http'` evaluates its WebSocket getter, which loads undici
  // (src/tuning/node-http.ts).
  t.notOk(loaded.some((m) => m.includes('undici')), 'undici is not')
})
