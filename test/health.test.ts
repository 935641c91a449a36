import t from 'tap'
import { buildTestApp } from './helper.js'

t.test('GET /health answers 200 with status ok', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ url: '/health' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ok' })
  t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/)
})

t.test('GET /ready answers 200 while the database answers, 503 once it is closed', async (t) => {
  const app = await buildTestApp(t)
  t.equal((await app.inject({ url: '/ready' })).statusCode, 200)
  app.sqlite.close()
  const res = await app.inject({ url: '/ready' })
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'SERVICE_UNAVAILABLE')
  // Reopen nothing: closing the app must not fail on an already-closed database.
})

t.test('probes are not rate limited', async (t) => {
  const app = await buildTestApp(t, { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_MAX: '2' })
  for (let i = 0; i < 5; i++) t.equal((await app.inject({ url: '/health' })).statusCode, 200)
  for (let i = 0; i < 5; i++) t.equal((await app.inject({ url: '/ready' })).statusCode, 200)
})
