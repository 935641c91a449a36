import t from 'tap'
import { loadConfig } from '../src/config.js'
import { decodeJwt } from './support/jwt.js'
import { buildTestApp, login, register, TEST_ENV } from './support/app.js'

const LOGINS = 30

async function lifetimes (t: Parameters<typeof buildTestApp>[0], env: Record<string, string>) {
  const app = await buildTestApp(t, env)
  await register(app)
  const seen: number[] = []
  for (let i = 0; i < LOGINS; i++) {
    const { res, accessToken } = await login(app, { transport: 'body' })
    const { payload } = decodeJwt(accessToken)
    t.equal(Number(payload.exp) - Number(payload.iat), res.json().expiresIn, 'expiresIn matches the token\'s exp - iat')
    seen.push(res.json().expiresIn)
  }
  return seen
}

t.test('ACCESS_TOKEN_JITTER takes up to that fraction off each lifetime, at random', async (t) => {
  const seen = await lifetimes(t, { ACCESS_TOKEN_TTL: '15m', ACCESS_TOKEN_JITTER: '0.1' })
  t.ok(seen.every((s) => s > 900 * 0.9 - 1 && s <= 900), `all within [810, 900]: ${seen.join(' ')}`)
  t.ok(new Set(seen).size > 1, 'lifetimes differ, so tokens issued together do not expire together')
})

t.test('without jitter (the default) every token lives exactly ACCESS_TOKEN_TTL', async (t) => {
  const seen = await lifetimes(t, { ACCESS_TOKEN_TTL: '15m' })
  t.same([...new Set(seen)], [900])
})

t.test('ACCESS_TOKEN_JITTER is bounded to 0..0.5', async (t) => {
  t.throws(() => loadConfig({ ...TEST_ENV, ACCESS_TOKEN_JITTER: '0.6' }), /^ACCESS_TOKEN_JITTER: '0.6' is not allowed; use a number from 0 to 0.5$/)
  t.throws(() => loadConfig({ ...TEST_ENV, ACCESS_TOKEN_JITTER: '-0.1' }), /^ACCESS_TOKEN_JITTER: '-0.1' is not allowed/)
  t.throws(() => loadConfig({ ...TEST_ENV, ACCESS_TOKEN_JITTER: 'lots' }), /not a number/)
  t.equal(loadConfig({ ...TEST_ENV, ACCESS_TOKEN_JITTER: '0.05' }).jwt.accessTokenJitter, 0.05)
})
