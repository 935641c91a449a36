/**
 * The wall clock stepped (an NTP correction, a VM restored from a snapshot): the key ring keeps
 * signing with the key it signs with, never deletes a key that has signed, and a refresh that
 * cannot be answered does not spend its token. The clock is `Date`, replaced (test/support/clock.ts).
 */
import t from 'tap'
import { buildTestApp, login, refreshWithBody, register } from '../support/app.js'
import { fakeDate, HOUR, MINUTE } from '../support/clock.js'
import { column, count, run } from '../support/db.js'
import { decode, me } from './support.js'

/** On the backend of the test pass: the keys are read and deleted through test/support/db.ts. */
const kids = async (app: Awaited<ReturnType<typeof buildTestApp>>): Promise<string[]> =>
  await column<string>(app, 'SELECT kid FROM signing_keys')

t.test('a wall clock stepped back an hour: login and refresh go on, no key is deleted, earlier tokens still verify', async (t) => {
  const clock = fakeDate(t)
  const app = await buildTestApp(t)
  await register(app)
  const before = await login(app, { transport: 'body' })
  const kid = decode(before.accessToken).header.kid as string

  clock.advance(-HOUR)
  const during = await login(app, { transport: 'body' })
  t.equal(during.res.statusCode, 200, `login while the clock is back (got ${during.res.body})`)
  t.equal(during.accessToken === undefined ? undefined : decode(during.accessToken).header.kid, kid, 'signed with the key that signed before')
  const refreshed = await refreshWithBody(app, before.refreshToken)
  t.equal(refreshed.statusCode, 200, `refresh while the clock is back (got ${refreshed.body})`)

  // The periodic key check, while the clock is back, and again once it is right.
  await app.keyRing.maintain(new Date())
  t.ok((await kids(app)).includes(kid), 'the key check keeps the key that has signed')
  t.ok((await app.inject({ url: '/.well-known/jwks.json' })).json().keys.some((k: { kid: string }) => k.kid === kid), 'and it stays published')
  clock.advance(HOUR + MINUTE)
  await app.keyRing.maintain(new Date())

  t.equal((await me(app, before.accessToken)).statusCode, 200, 'a token from before the step still verifies')
  // Issued an hour "ago" by the clock now: expired, but its signature is still known and good.
  t.equal(during.accessToken === undefined ? undefined : (await me(app, during.accessToken)).json().code, 'ACCESS_TOKEN_EXPIRED', 'a token from during the step is expired, not unknown')
  t.equal((await refreshWithBody(app, refreshed.json().refreshToken ?? '')).statusCode, 200, 'the session goes on')
})

t.test('a refresh that cannot be answered does not spend its token; a login that cannot be answered starts no session', async (t) => {
  const clock = fakeDate(t)
  const app = await buildTestApp(t, { REFRESH_REUSE_INTERVAL: '10s' })
  await register(app)
  const session = await login(app, { transport: 'body' })
  const sessions = async (): Promise<number> => await count(app, 'SELECT count(*) FROM sessions')

  // No key can sign (all gone from the database): the service must say so without side effects.
  await run(app, 'DELETE FROM signing_keys')
  await app.keyRing.reload()
  const refused = await refreshWithBody(app, session.refreshToken)
  t.equal(refused.statusCode, 503, `503 (got ${refused.statusCode} ${refused.body})`)
  t.match(refused.json(), { statusCode: 503, code: 'SERVICE_UNAVAILABLE' })
  t.ok(refused.headers['retry-after'], 'with Retry-After')
  const loginRefused = await login(app, { transport: 'body' })
  t.equal(loginRefused.res.statusCode, 503)
  t.equal(await sessions(), 1, 'the refused login started no session')

  // The key comes back; the client retries later than the reuse interval.
  await app.keyRing.maintain(new Date())
  clock.advance(MINUTE)
  const retried = await refreshWithBody(app, session.refreshToken)
  t.equal(retried.statusCode, 200, `the retry rotates normally (got ${retried.body})`)
  t.equal((await me(app, retried.json().accessToken)).statusCode, 200, 'and the session is alive')
})
