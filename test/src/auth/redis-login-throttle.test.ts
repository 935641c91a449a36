/**
 * The Redis login throttle against a real redis-server: the in-memory throttle's cases, run on
 * both and answered alike (one rule, two stores), then what Redis adds: the counts are shared by
 * every client of one Redis, nothing of the username is stored in clear, and it fails closed.
 */
import t, { type Test } from 'tap'
import { createLoginThrottle, type LoginThrottle } from '../../../src/auth/login-throttle.js'
import { createRedisLoginThrottle, KEY_PREFIX, PENDING_TTL_MS } from '../../../src/auth/redis-login-throttle.js'
import { closeRedis, connectRedis, type Redis } from '../../../src/redis.js'
import { redisServer, type RedisServer } from '../../support/redis.js'

const at = (seconds: number): Date => new Date(Date.UTC(2026, 0, 1) + seconds * 1000)
const quiet = { warn: () => {}, info: () => {} }

async function client (t: Test, server: RedisServer): Promise<Redis> {
  const redis = await connectRedis(server.url, quiet)
  t.teardown(() => closeRedis(redis))
  return redis
}

type Make = (t: Test, options: { max: number, windowSeconds: number }) => Promise<LoginThrottle | null>
const stores: Array<[string, Make]> = [
  ['in memory', async (_t, options) => createLoginThrottle(options)],
  ['in Redis', async (t, options) => {
    const server = await redisServer(t)
    if (server === null) return null
    return createRedisLoginThrottle(await client(t, server), options, (err) => { throw err })
  }]
]

for (const [name, make] of stores) {
  t.test(`${name}: attempts are counted when reserved: the (max+1)-th at once is refused before any has settled`, async (t) => {
    const throttle = await make(t, { max: 3, windowSeconds: 60 })
    if (throttle === null) return
    for (let i = 0; i < 3; i++) t.same(await throttle.reserve('k', at(0)), { ok: true })
    t.same(await throttle.reserve('k', at(0)), { ok: false, retryAfter: 1 }, 'refused while three are being checked: they settle within moments')
    t.same(await throttle.reserve('other', at(0)), { ok: true }, 'other keys are counted apart')
    for (let i = 0; i < 3; i++) await throttle.release('k', at(1), 'failed')
    t.same(await throttle.reserve('k', at(10)), { ok: false, retryAfter: 50 }, 'three failures: refused until the window ends')
    t.same(await throttle.reserve('k', at(60)), { ok: true }, 'a new window')
  })

  t.test(`${name}: a right password forgets the failures, not the attempts still being checked`, async (t) => {
    const throttle = await make(t, { max: 3, windowSeconds: 60 })
    if (throttle === null) return
    await throttle.reserve('k', at(0))
    await throttle.release('k', at(0), 'failed')
    await throttle.reserve('k', at(1)) // still being checked
    await throttle.reserve('k', at(1)) // the right one
    await throttle.reset('k', at(2))
    t.same(await throttle.reserve('k', at(2)), { ok: true })
    t.same(await throttle.reserve('k', at(2)), { ok: true })
    t.same(await throttle.reserve('k', at(2)), { ok: false, retryAfter: 1 }, 'the one in flight and the two new ones fill the limit')
  })

  t.test(`${name}: an attempt whose password was never checked is given back`, async (t) => {
    const throttle = await make(t, { max: 1, windowSeconds: 60 })
    if (throttle === null) return
    t.same(await throttle.reserve('k', at(0)), { ok: true })
    await throttle.release('k', at(0), 'unchecked')
    t.same(await throttle.reserve('k', at(0)), { ok: true })
  })
}

t.test('in Redis: two clients (two instances) reserving in parallel never both get the last place', async (t) => {
  const server = await redisServer(t)
  if (server === null) return
  const options = { max: 7, windowSeconds: 60 }
  const fail = (err: unknown): never => { throw err }
  const a = createRedisLoginThrottle(await client(t, server), options, fail)
  const b = createRedisLoginThrottle(await client(t, server), options, fail)
  const answers = await Promise.all(Array.from({ length: 200 }, async (_, i) => await (i % 2 === 0 ? a : b).reserve('k', at(0))))
  t.equal(answers.filter((r) => r.ok).length, 7, 'exactly max granted over both')
})

t.test('in Redis: attempts never settled (a reserve that timed out but ran, an instance that died) stop holding places a while after the last one, failures do not', async (t) => {
  const server = await redisServer(t)
  if (server === null) return
  const throttle = createRedisLoginThrottle(await client(t, server), { max: 3, windowSeconds: 900 }, (err) => { throw err })
  const ttl = PENDING_TTL_MS / 1000
  t.same(await throttle.reserve('k', at(0)), { ok: true })
  await throttle.release('k', at(0), 'failed')
  for (let i = 0; i < 2; i++) t.same(await throttle.reserve('k', at(10)), { ok: true }, 'two attempts whose answers never come')
  t.same(await throttle.reserve('k', at(10 + ttl - 1)), { ok: false, retryAfter: 1 }, 'they hold their places for a while')
  t.same(await throttle.reserve('k', at(10 + ttl)), { ok: true }, 'then they are taken as lost')
  await throttle.release('k', at(10 + ttl), 'failed')
  t.same(await throttle.reserve('k', at(10 + ttl)), { ok: true })
  await throttle.release('k', at(10 + ttl), 'failed')
  t.same(await throttle.reserve('k', at(10 + 2 * ttl)), { ok: false, retryAfter: 900 - 10 - 2 * ttl }, 'three failures: refused until the window ends, however long ago')
})

t.test('in Redis: the username is not stored in clear', async (t) => {
  const server = await redisServer(t)
  if (server === null) return
  const redis = await client(t, server)
  const throttle = createRedisLoginThrottle(redis, { max: 3, windowSeconds: 60 }, () => {})
  await throttle.reserve('my password typed in the name field', at(0))
  const keys = await redis.keys('*')
  t.equal(keys.length, 1)
  t.match(keys[0], new RegExp(`^${KEY_PREFIX}[0-9a-f]{64}$`), 'a digest of it')
  t.notMatch(JSON.stringify([keys, await redis.hgetall(keys[0]!)]), /password/)
})

t.test('in Redis, fails closed: with Redis gone, reserve throws THROTTLE_UNAVAILABLE; a settlement only reports its error', async (t) => {
  const server = await redisServer(t)
  if (server === null) return
  const errors: unknown[] = []
  const throttle = createRedisLoginThrottle(await client(t, server), { max: 3, windowSeconds: 60 }, (err) => errors.push(err))
  t.same(await throttle.reserve('k', at(0)), { ok: true })
  await server.stop()
  await t.rejects(Promise.resolve(throttle.reserve('k', at(0))), { code: 'THROTTLE_UNAVAILABLE', statusCode: 503 })
  await throttle.release('k', at(0), 'failed')
  t.equal(errors.length, 2, 'both errors reported')
})
