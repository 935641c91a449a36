/**
 * The verifier plugin in a consuming Fastify app, against a really listening service: it
 * accepts the service's tokens, refuses every forged one with exactly the service's answer,
 * validates its options at registration, and copes with an unreachable key set.
 */
import Fastify from 'fastify'
import t from 'tap'
import verifier from '../../packages/verifier/src/index.js'
import { ISSUER, AUDIENCE, startConsumer, startService, whoami } from '../interop/support.js'
import { login } from '../support/app.js'
import { ASYMMETRIC, attackerKey, envFor, forge, forgeries, highSTwin, me, serviceKey, session } from '../keys/support.js'

t.test('options are checked at registration', async (t) => {
  const bad: Array<[string, Record<string, unknown>]> = [
    ['no issuer', { audience: AUDIENCE }],
    ['no audience', { issuer: ISSUER }],
    ['HS256', { issuer: ISSUER, audience: AUDIENCE, algorithms: ['HS256'] }],
    ['none', { issuer: ISSUER, audience: AUDIENCE, algorithms: ['none'] }],
    ['no algorithm at all', { issuer: ISSUER, audience: AUDIENCE, algorithms: [] }],
    ['a JWKS URL that is not http(s)', { issuer: ISSUER, audience: AUDIENCE, jwksUrl: 'file:///etc/passwd' }],
    ['a negative cooldown', { issuer: ISSUER, audience: AUDIENCE, cooldown: -1 }]
  ]
  for (const [name, options] of bad) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(verifier, options as never).ready() }, TypeError, name)
    await app.close()
  }
})

for (const alg of ASYMMETRIC) {
  t.test(`${alg}: the consumer accepts genuine tokens and answers forged ones exactly as the service does`, async (t) => {
    const service = await startService(t, envFor(alg))
    const consumer = await startConsumer(t, { jwksUrl: service.jwksUrl })
    const genuine = await session(service.app)

    const ok = await whoami(consumer, genuine.token)
    t.equal(ok.statusCode, 200)
    t.same(ok.json().claims, genuine.payload, 'request.user holds the claims')

    const cases = [
      ...forgeries(genuine, serviceKey(service.app)).map((f) => ({ ...f, authorization: `Bearer ${f.token}` })),
      { name: 'no Authorization header', authorization: undefined, code: 'AUTHORIZATION_REQUIRED' },
      { name: 'not a Bearer token', authorization: 'Basic YWxpY2U6cHc=', code: 'ACCESS_TOKEN_INVALID' },
      { name: 'a malformed token', authorization: 'Bearer not.a-token', code: 'ACCESS_TOKEN_INVALID' }
    ]
    for (const c of cases) {
      const headers = c.authorization === undefined ? {} : { authorization: c.authorization }
      const fromService = await service.app.inject({ url: '/api/auth/me', headers })
      const fromConsumer = await consumer.inject({ url: '/whoami', headers })
      t.equal(fromConsumer.statusCode, 401, `${c.name}: 401`)
      t.equal(fromConsumer.json().code, c.code, `${c.name}: ${c.code}`)
      t.same(fromConsumer.json(), fromService.json(), `${c.name}: the same body as the service`)
      t.equal(fromConsumer.headers['www-authenticate'], fromService.headers['www-authenticate'], `${c.name}: the same challenge`)
      t.equal(fromConsumer.headers['content-type'], fromService.headers['content-type'])
    }
  })
}

t.test('ES256: the high-S twin of a genuine signature is refused, as by the service', async (t) => {
  const service = await startService(t, envFor('ES256'))
  const consumer = await startConsumer(t, { jwksUrl: service.jwksUrl })
  await session(service.app)
  for (let i = 0; i < 8; i++) {
    const { accessToken } = await login(service.app)
    t.equal((await whoami(consumer, accessToken)).statusCode, 200, `token ${i}: accepted`)
    const twin = await whoami(consumer, highSTwin(accessToken))
    t.equal(twin.statusCode, 401, `token ${i}: its twin (r, n - s) is refused`)
    t.same(twin.json(), (await me(service.app, highSTwin(accessToken))).json(), 'the same answer as the service')
  }
})

t.test('HS256 tokens are never accepted by the verifier', async (t) => {
  const service = await startService(t, envFor('HS256'))
  const consumer = await startConsumer(t, { jwksUrl: service.jwksUrl })
  const genuine = await session(service.app)
  t.equal((await me(service.app, genuine.token)).statusCode, 200, 'the service itself accepts it')
  const res = await whoami(consumer, genuine.token)
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'ACCESS_TOKEN_INVALID')
})

t.test('an unknown kid refetches the key set at most once per cooldown', async (t) => {
  const service = await startService(t)
  const consumer = await startConsumer(t, { jwksUrl: service.jwksUrl, cooldown: 60_000 })
  const genuine = await session(service.app)
  t.equal((await whoami(consumer, genuine.token)).statusCode, 200)
  t.equal(service.jwksFetches(), 1)
  const attacker = attackerKey('ES256')
  for (let i = 0; i < 20; i++) {
    const res = await whoami(consumer, forge({ ...genuine.header, kid: `forged-${i}` }, genuine.payload, attacker))
    t.equal(res.statusCode, 401)
  }
  t.equal(service.jwksFetches(), 1, 'twenty forged kids within the cooldown: no refetch')
})

t.test('when the service cannot be reached', async (t) => {
  t.test('with no key set fetched yet: 503 with Retry-After', async (t) => {
    const service = await startService(t)
    const genuine = await session(service.app)
    const jwksUrl = service.jwksUrl
    await service.app.close()
    const consumer = await startConsumer(t, { jwksUrl, timeout: 2000 })
    const res = await whoami(consumer, genuine.token)
    t.equal(res.statusCode, 503)
    t.equal(res.json().code, 'SERVICE_UNAVAILABLE')
    t.equal(res.headers['retry-after'], '5')
  })
  t.test('with a key set fetched before: the last one is still used', async (t) => {
    const service = await startService(t)
    const genuine = await session(service.app)
    // cacheMaxAge 0: every request tries the network first.
    const consumer = await startConsumer(t, { jwksUrl: service.jwksUrl, cacheMaxAge: 0, timeout: 2000 })
    t.equal((await whoami(consumer, genuine.token)).statusCode, 200)
    await service.app.close()
    t.equal((await whoami(consumer, genuine.token)).statusCode, 200, 'verified offline with the cached keys')
    const forged = forge({ ...genuine.header, kid: 'attacker' }, genuine.payload, attackerKey('ES256'))
    t.equal((await whoami(consumer, forged)).statusCode, 401, 'and forged tokens are still refused')
  })
})

t.test('the jwksUrl defaults to the issuer\'s /.well-known/jwks.json', async (t) => {
  const service = await startService(t)
  const app = Fastify()
  await app.register(verifier, { issuer: service.origin, audience: AUDIENCE })
  app.get('/x', { onRequest: app.authenticate }, async (request) => request.user.sub)
  await app.ready()
  t.teardown(() => app.close())
  // The service's own key, signing for an issuer equal to its origin (its PUBLIC_URL in a deployment).
  const genuine = await session(service.app)
  const token = forge(genuine.header, { ...genuine.payload, iss: service.origin }, serviceKey(service.app).key)
  const res = await app.inject({ url: '/x', headers: { authorization: `Bearer ${token}` } })
  t.equal(res.statusCode, 200)
  t.equal(res.body, genuine.payload.sub)
  t.equal(service.jwksFetches(), 1, 'fetched from <issuer>/.well-known/jwks.json')
})
