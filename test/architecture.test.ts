/**
 * Imports point only downward: routes → plugins → src → db. A module may import from its own
 * layer or a lower one, never from a higher one. The one exception is src/app.ts, the
 * composition root: `buildApp` registers the plugins and routes, in order, and so names them all.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import ts from 'typescript'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const LAYERS = ['db', 'src', 'plugins', 'routes'] as const
const COMPOSITION_ROOT = 'src/app.ts'

const layerOf = (path: string): number => LAYERS.indexOf(path.split('/')[0] as typeof LAYERS[number])

/** The repository-relative paths of every .ts file under the four layers. */
function sources (): string[] {
  return LAYERS.flatMap((layer) => (readdirSync(join(root, layer), { recursive: true, encoding: 'utf8' }))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => `${layer}/${f.split(sep).join('/')}`))
}

/** Each relative import (static, dynamic, `export … from`, `import type`) of `file` that points to a higher layer. */
function upwardImports (file: string, text: string): string[] {
  const from = layerOf(file)
  return ts.preProcessFile(text, true, true).importedFiles
    .map((i) => i.fileName)
    .filter((spec) => spec.startsWith('.'))
    .filter((spec) => {
      const target = relative(root, resolve(root, dirname(file), spec)).split(sep).join('/')
      return layerOf(target) > from
    })
    .map((spec) => `${file} imports ${spec}`)
}

t.test('the check sees every kind of import that points up', async (t) => {
  const text = [
    "import { a } from '../../plugins/db.js'",
    "import type { B } from '../../routes/schemas.js'",
    "export { c } from '../../plugins/metrics.js'",
    "const d = await import('../../routes/health.js')",
    "import { e } from '../auth/credentials.js'",
    "import { f } from '../../db/client.js'",
    "import t from 'tap'"
  ].join('\n')
  t.same(upwardImports('src/cli/x.ts', text), [
    "src/cli/x.ts imports ../../plugins/db.js",
    "src/cli/x.ts imports ../../routes/schemas.js",
    "src/cli/x.ts imports ../../plugins/metrics.js",
    "src/cli/x.ts imports ../../routes/health.js"
  ])
  t.same(upwardImports('db/repositories/x.ts', "import { u } from '../../src/auth/credentials.js'"), ['db/repositories/x.ts imports ../../src/auth/credentials.js'])
})

t.test('no module imports from a layer above its own (routes → plugins → src → db)', async (t) => {
  const files = sources()
  t.ok(files.length > 20, 'the layers hold the service\'s modules')
  const upward = files
    .filter((f) => f !== COMPOSITION_ROOT)
    .flatMap((f) => upwardImports(f, readFileSync(join(root, f), 'utf8')))
  t.same(upward, [], 'every import points down or sideways')
})
