/**
 * src/tuning/lazy-serializers.ts: no response serializer is built while the app starts; a
 * route's is built at its first answer with that status, once, and later answers are the same.
 * fast-json-stringify, the function Fastify's default compiler calls, is counted (wrapped,
 * still doing its real work) before the app loads.
 */
import { createRequire } from 'node:module'
import t from 'tap'

const require = createRequire(import.meta.url)
// The copy Fastify's compiler loads: resolved from @fastify/fast-json-stringify-compiler.
const compilerRequire = createRequire(require.resolve('@fastify/fast-json-stringify-compiler'))
const fjsPath = compilerRequire.resolve('fast-json-stringify')
const real = compilerRequire('fast-json-stringify') as (...args: unknown[]) => unknown
let built = 0
require.cache[fjsPath]!.exports = Object.assign((...args: unknown[]) => { built++; return real(...args) }, real)

const { buildTestApp, login, register } = await import('../../support/app.js')

t.test('response serializers are built at first use, not at start', async (t) => {
  const app = await buildTestApp(t)
  t.equal(built, 0, 'no serializer built by the time the app is ready')
  await register(app)
  const { accessToken } = await login(app, { transport: 'body' })
  const afterLogin = built
  t.ok(afterLogin > 0 && afterLogin <= 4, `registration and login built their own (${afterLogin})`)
  const me = async (): Promise<Record<string, unknown>> => (await app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${accessToken!}` } })).json()
  const first = await me()
  t.equal(built, afterLogin + 1, 'the first /me built its 200 serializer')
  t.same(await me(), first, 'the next answers are the same')
  t.equal(built, afterLogin + 1, 'and built nothing more')
})
