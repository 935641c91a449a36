/**
 * An entry point started directly with a Node.js older than `engines.node` (the distribution's
 * Node 20, an old global install) stops with one line naming the versions, before better-sqlite3's
 * native binary is loaded (which crashes Node 20 with a bare segmentation fault).
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'

const OLD_NODE = process.env.OLD_NODE ?? '/usr/bin/node'
const oldVersion = existsSync(OLD_NODE)
  ? spawnSync(OLD_NODE, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim()
  : ''
const skip = oldVersion === ''
  ? `no old Node.js at ${OLD_NODE}`
  : Number(oldVersion.split('.')[0]) >= 22 ? `${OLD_NODE} is Node ${oldVersion}, not older than 22` : false

const entries: Array<[string, string[]]> = [
  ['the server', ['src/server.ts']],
  ['the keys CLI', ['src/cli/keys.ts', 'list']],
  ['the admin CLI', ['src/cli/admin.ts', 'users']],
  ['the migrator', ['src/cli/migrate.ts']]
]

for (const [name, args] of entries) {
  t.test(`${name} on Node ${oldVersion || '(none)'} says which Node it needs`, { skip }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'auth-old-node-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    // tsx runs the TypeScript sources on the old Node just as `node dist/...` would run the build.
    const r = spawnSync(OLD_NODE, ['--import', 'tsx', ...args], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, DATABASE_URL: `file:${join(dir, 'auth.db')}`, PORT: '0' }
    })
    t.equal(r.signal, null, 'no crash by a signal')
    t.equal(r.status, 1)
    t.equal(r.stdout, '')
    const lines = r.stderr.trim().split('\n')
    t.equal(lines.length, 1, 'one line')
    t.match(lines[0], `Node ≥ 22 required, found ${oldVersion}`)
  })
}
