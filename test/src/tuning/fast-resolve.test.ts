/**
 * The entry point's resolver shortcut (src/tuning/fast-resolve.ts) must load exactly the modules Node
 * itself would, in the same format, while sparing Node's resolver the relative imports inside
 * ES-module packages (that is the whole point: each of those re-parses the package's exports).
 */
import { execFile } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'

const HERE = dirname(fileURLToPath(import.meta.url))
const run = promisify(execFile)

async function probe (fast: boolean): Promise<{ loaded: string[], reachedNode: number }> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', join(HERE, '..', '..', 'support', 'fast-resolve-probe.ts')], {
    env: { ...process.env, FAST_RESOLVE: fast ? '1' : '0' },
    maxBuffer: 16 * 1024 * 1024,
    timeout: 60_000
  })
  return JSON.parse(stdout) as { loaded: string[], reachedNode: number }
}

t.test('the same modules load, in the same format, with and without the shortcut', async (t) => {
  const [plain, fast] = await Promise.all([probe(false), probe(true)])
  t.ok(plain.loaded.length > 500, `the probe loads many package modules (${plain.loaded.length})`)
  t.same(fast.loaded, plain.loaded)
  t.ok(plain.reachedNode > 500, `without the shortcut Node resolves each relative import of drizzle-orm, typebox and jose (${plain.reachedNode})`)
  t.equal(fast.reachedNode, 0, 'with it, none of them reaches Node\'s resolver')
})
