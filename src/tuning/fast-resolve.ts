/**
 * A start-up shortcut for Node's ES module resolver, registered by the entry point before any
 * package is loaded.
 *
 * Why: for every ES module file it loads, Node looks up the package.json that decides the
 * file's format, and that lookup re-parses the package's whole `exports` map each time; the
 * service's ES-module packages (drizzle-orm, typebox) have large maps and load thousands of
 * files. The time and memory it saves: docs/decisions/0009-module-resolution-shortcut.md.
 *
 * What it does, and only this: a relative import (`./x.js`, `../y.mjs`) from a file inside
 * node_modules, in a package whose package.json says `"type": "module"` (or of a `.mjs` file),
 * is resolved to the file next to its importer and declared an ES module, which is exactly what
 * Node's own resolver concludes for it. Everything else (bare specifiers, `exports` maps, CommonJS,
 * files of packages without `"type": "module"`, the service's own files) goes to Node's resolver
 * unchanged. On a Node without `module.registerHooks` (before 22.15) it does nothing.
 */
import { readFileSync } from 'node:fs'
import * as nodeModule from 'node:module'

type ResolveHook = (specifier: string, context: { parentURL?: string }, next: (specifier: string, context: { parentURL?: string }) => unknown) => unknown

export function registerFastResolve (): boolean {
  const register = (nodeModule as unknown as { registerHooks?: (hooks: { resolve: ResolveHook }) => unknown }).registerHooks
  if (typeof register !== 'function') return false

  /** Directory URL → whether the nearest package.json above it has "type": "module". */
  const isModuleScope = new Map<string, boolean>()
  const moduleScope = (fileUrl: URL): boolean => {
    const visited: string[] = []
    let dir = new URL('./', fileUrl)
    let result = false
    for (;;) {
      const known = isModuleScope.get(dir.href)
      if (known !== undefined) { result = known; break }
      visited.push(dir.href)
      let text: string | undefined
      try {
        text = readFileSync(new URL('package.json', dir), 'utf8')
      } catch {
        text = undefined
      }
      if (text !== undefined) {
        try {
          result = (JSON.parse(text) as { type?: unknown }).type === 'module'
        } catch {
          result = false
        }
        break
      }
      const parent = new URL('../', dir)
      if (parent.href === dir.href) break
      dir = parent
    }
    for (const d of visited) isModuleScope.set(d, result)
    return result
  }

  register({
    resolve (specifier, context, next) {
      const parent = context.parentURL
      if (parent !== undefined && parent.startsWith('file:') && parent.includes('/node_modules/') &&
          (specifier.startsWith('./') || specifier.startsWith('../')) && /\.m?js$/.test(specifier)) {
        const url = new URL(specifier, parent)
        if (specifier.endsWith('.mjs') || moduleScope(url)) return { url: url.href, format: 'module', shortCircuit: true }
      }
      return next(specifier, context)
    }
  })
  return true
}
