/**
 * Child process for fast-resolve.test.ts (not a test file). With FAST_RESOLVE=1 it registers the
 * service's resolver shortcut first, exactly as src/server.ts does. Then it loads the packages
 * the shortcut is for and prints, as JSON, every module that was loaded (URL and format) and how
 * many relative imports inside node_modules still reached Node's own resolver.
 */
import * as nodeModule from 'node:module'
import { registerFastResolve } from '../../src/tuning/fast-resolve.js'

const ESM_PACKAGES = /\/node_modules\/(drizzle-orm|typebox|jose)\//
const loaded: string[] = []
let reachedNode = 0
// Registered first, so it runs after the shortcut in the chain: it sees only what the shortcut
// passed on to Node's resolver.
nodeModule.registerHooks({
  resolve (specifier, context, next) {
    // Relative imports inside the ES-module packages loaded below (CommonJS requires, which
    // these hooks also see, are not the shortcut's business).
    if ((specifier.startsWith('./') || specifier.startsWith('../')) && ESM_PACKAGES.test(context.parentURL ?? '')) reachedNode++
    return next(specifier, context)
  },
  load (url, context, next) {
    const result = next(url, context)
    if (url.includes('/node_modules/')) loaded.push(`${url} ${String(result.format)}`)
    return result
  }
})
if (process.env.FAST_RESOLVE === '1') registerFastResolve()

await import('drizzle-orm/better-sqlite3')
await import('drizzle-orm')
await import('typebox')
await import('typebox/value')
await import('jose')
process.stdout.write(JSON.stringify({ loaded: loaded.sort(), reachedNode }))
