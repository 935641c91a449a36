/**
 * `npm run build` (which `npm start` runs first) on a copy of the project: a second build with
 * nothing changed writes no file, so a start with nothing changed does not wait for a compile;
 * dist/ mirrors db/migrations and the demo's files, a file deleted from the sources included; and
 * a changed source is compiled again.
 */
import { execFile } from 'node:child_process'
import { appendFileSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'

const ROOT = join(import.meta.dirname, '..')
const run = promisify(execFile)
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'

// The first build of the copy compiles everything, which takes a while on a busy machine.
t.setTimeout(600_000)

const copy = mkdtempSync(join(tmpdir(), 'auth-build-'))
t.teardown(() => rmSync(copy, { recursive: true, force: true }))
for (const entry of ['package.json', 'tsconfig.json', 'src', 'plugins', 'routes', 'db', 'scripts']) {
  cpSync(join(ROOT, entry), join(copy, entry), { recursive: true })
}
for (const pkg of ['verifier', 'client']) {
  for (const entry of ['package.json', 'tsconfig.json', 'src']) {
    cpSync(join(ROOT, 'packages', pkg, entry), join(copy, 'packages', pkg, entry), { recursive: true })
  }
}
symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'))

async function build (): Promise<void> {
  await run(npm, ['run', 'build'], { cwd: copy, timeout: 540_000 })
}

/** Every file the build wrote, with its modification time. */
function outputs (): Map<string, number> {
  const files = new Map<string, number>()
  for (const dir of ['dist', 'packages/verifier/dist', 'packages/client/dist']) {
    for (const f of readdirSync(join(copy, dir), { recursive: true, encoding: 'utf8' })) {
      const stat = statSync(join(copy, dir, f))
      if (stat.isFile()) files.set(join(dir, f), stat.mtimeMs)
    }
  }
  return files
}

function filesUnder (dir: string): string[] {
  return readdirSync(join(copy, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => statSync(join(copy, dir, f)).isFile()).sort()
}

t.test('a build with nothing changed writes no file', async (t) => {
  await build()
  const first = outputs()
  t.ok(first.has('dist/src/server.js') && first.has('packages/verifier/dist/index.js'), 'the first build wrote the service and the packages')
  await build()
  const second = outputs()
  const rewritten = [...second].filter(([f, mtime]) => first.get(f) !== mtime).map(([f]) => f)
  t.same(rewritten, [], 'no output file rewritten')
  t.same([...second.keys()].sort(), [...first.keys()].sort(), 'the same files')
})

t.test('dist/ mirrors the migrations and the demo, deletions included', async (t) => {
  t.same(filesUnder('dist/db/migrations'), filesUnder('db/migrations'), 'the migrations are copied')
  t.same(filesUnder('dist/src/demo'), filesUnder('src/demo'), 'the demo files are copied')
  const migration = filesUnder('db/migrations').filter((f) => f.endsWith('.sql')).at(-1)!
  rmSync(join(copy, 'db', 'migrations', migration))
  writeFileSync(join(copy, 'src', 'demo', 'demo.css'), 'body { color: green }\n')
  await build()
  t.notOk(filesUnder('dist/db/migrations').includes(migration), `${migration}, deleted from the sources, is gone from dist/`)
  t.same(filesUnder('dist/db/migrations'), filesUnder('db/migrations'))
  t.equal(readFileSync(join(copy, 'dist', 'src', 'demo', 'demo.css'), 'utf8'), 'body { color: green }\n', 'a changed demo file is copied again')
})

t.test('a changed source is compiled again', async (t) => {
  const source = join(copy, 'packages', 'client', 'src', 'auth-client.ts')
  appendFileSync(source, '\nexport const changedByBuildTest = 1\n')
  await build()
  for (const out of ['packages/client/dist/auth-client.js', 'dist/packages/client/src/auth-client.js']) {
    t.match(readFileSync(join(copy, out), 'utf8'), 'changedByBuildTest', `${relative(copy, join(copy, out))} holds the change`)
  }
})
