/**
 * A rotation that logs nobody out, seen from a really listening service and two consuming
 * services built with the verifier plugin: one caches the key set as long as the service's
 * Cache-Control says, one far longer. Time moves with `fakeDate` in running mode (Date only), never sleeps.
 */
import t from 'tap'
import { login } from '../support/app.js'
import { decode, forgeries, me, serviceKey, session } from '../keys/support.js'
import { fakeDate } from '../support/clock.js'
import { startConsumer, startService, whoami } from './support.js'

const MINUTE = 60_000

t.test('tokens from before a rotation verify until they expire; new tokens carry the new kid; cached verifiers pick it up', async (t) => {
  const clock = fakeDate(t, Date.now(), { running: true })
  // Lead time = JWKS_MAX_AGE + KEY_CHECK_INTERVAL = 3 minutes; tokens live 15 minutes.
  const service = await startService(t, { JWKS_MAX_AGE: '2m', KEY_CHECK_INTERVAL: '1m', ACCESS_TOKEN_TTL: '15m' })
  const honouring = await startConsumer(t, { jwksUrl: service.jwksUrl, cacheMaxAge: 2 * MINUTE })
  const stubborn = await startConsumer(t, { jwksUrl: service.jwksUrl, cacheMaxAge: 24 * 60 * MINUTE })

  const before = await session(service.app)
  const oldKid = String(before.header.kid)
  t.equal((await whoami(honouring, before.token)).statusCode, 200)
  t.equal((await whoami(stubborn, before.token)).statusCode, 200)
  t.equal(service.jwksFetches(), 2, 'each consumer fetched the key set once and cached it')

  // Scheduled rotation (what the periodic check does when the interval is up; here on demand).
  const created = (await service.app.keyRing.rotate(new Date())).find((e) => e.type === 'created')!
  t.equal(created.activatesAt!.getTime() - Date.now() <= 3 * MINUTE, true)
  t.equal(decode((await login(service.app)).accessToken).header.kid, oldKid, 'during the lead time the old key still signs')

  clock.advance(3 * MINUTE + 1000)
  await service.app.keyRing.maintain(new Date())
  const after = decode((await login(service.app)).accessToken)
  const afterToken = (await login(service.app)).accessToken
  t.equal(after.header.kid, created.kid, 'tokens after the rotation carry the new kid')
  t.not(created.kid, oldKid)

  for (const [name, consumer] of [['honouring Cache-Control', honouring], ['caching for a day', stubborn]] as const) {
    const res = await whoami(consumer, afterToken)
    t.equal(res.statusCode, 200, `${name}: the new kid is accepted without a restart`)
    t.equal((await whoami(consumer, before.token)).statusCode, 200, `${name}: the old token still verifies`)
  }
  t.equal((await me(service.app, before.token)).statusCode, 200, 'and the service itself still accepts it')

  // Every forgery of a post-rotation token is refused by the consumer, with the service's answer.
  const fresh = { token: afterToken, ...decode(afterToken) }
  for (const f of forgeries(fresh, serviceKey(service.app))) {
    const res = await whoami(stubborn, f.token)
    t.equal(res.statusCode, 401, f.name)
    t.equal(res.json().code, f.code, f.name)
  }

  // Until the old token's own expiry, and not after.
  clock.advance(Number(before.payload.exp) * 1000 - Date.now() + 6000)
  for (const consumer of [honouring, stubborn]) {
    t.equal((await whoami(consumer, before.token)).json().code, 'ACCESS_TOKEN_EXPIRED')
    t.equal((await whoami(consumer, afterToken)).statusCode, 200)
  }
  t.equal((await me(service.app, before.token)).json().code, 'ACCESS_TOKEN_EXPIRED')

  // Then the old key leaves the JWKS.
  clock.advance(5 * MINUTE)
  await service.app.keyRing.maintain(new Date())
  const kids = ((await service.app.inject({ url: '/.well-known/jwks.json' })).json().keys as Array<{ kid: string }>).map((k) => k.kid)
  t.same(kids, [created.kid], 'the retired key is removed once its last token has expired')
  t.equal((await whoami(honouring, (await login(service.app)).accessToken)).statusCode, 200, 'the new key goes on signing and verifying')
})

t.test('an immediate rotation: verifiers that fetched within the cooldown wait for it, then pick the key up', async (t) => {
  const clock = fakeDate(t, Date.now(), { running: true })
  const service = await startService(t)
  const consumer = await startConsumer(t, { jwksUrl: service.jwksUrl, cooldown: 30_000 })
  const before = await session(service.app)
  t.equal((await whoami(consumer, before.token)).statusCode, 200)

  await service.app.keyRing.rotate(new Date(), true)
  const after = (await login(service.app)).accessToken
  t.not(decode(after).header.kid, before.header.kid, 'the new key signs at once')
  t.equal((await whoami(consumer, before.token)).statusCode, 200, 'the old key\'s tokens stay valid')
  t.equal((await whoami(consumer, after)).statusCode, 401, 'within the cooldown of its last fetch, the consumer does not refetch')

  clock.advance(31_000)
  t.equal((await whoami(consumer, after)).statusCode, 200, 'after the cooldown, the unknown kid triggers one refetch')
})
