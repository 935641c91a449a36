/**
 * Run by test/src/tuning/node-http.test.ts in a fresh process: builds the app, answers one request, and
 * prints the built-in modules Node has loaded, as JSON. Not a test file.
 */
import { buildApp } from '../../src/app.js'
import { testConfig } from './app.js'

const app = await buildApp(testConfig())
await app.inject({ url: '/health' })
await app.close()
// process.moduleLoadList: Node's own list of the internal modules it has loaded (not typed).
const loaded = (process as unknown as { moduleLoadList: string[] }).moduleLoadList
console.log(JSON.stringify(loaded.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length))))
