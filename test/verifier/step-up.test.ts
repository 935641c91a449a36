/**
 * Step-up per route (RFC 9470): the verifier's `authenticateWith({ requireAmr, maxAuthAge })` in a
 * consuming service, against a really listening auth service.
 */
import * as OTPAuth from 'otpauth'
import t from 'tap'
import Fastify from 'fastify'
import verifier from '../../packages/verifier/src/index.js'
import { AUDIENCE, ISSUER, startService } from '../interop/support.js'
import { login, PASSWORD, register } from '../support/app.js'
import { fakeDate, MINUTE, SECOND } from '../support/clock.js'

const codeAt = (secret: string, ms: number): string => new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret) }).generate({ timestamp: ms })
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

t.test('options are checked when a route asks for them', async (t) => {
  const app = Fastify()
  await app.register(verifier, { issuer: ISSUER, audience: AUDIENCE, jwksUrl: 'http://127.0.0.1:9/jwks.json' })
  t.throws(() => app.authenticateWith({ maxAuthAge: 'five minutes' }), TypeError)
  t.throws(() => app.authenticateWith({ maxAuthAge: -1 }), TypeError)
  t.throws(() => app.authenticateWith({ requireAmr: 'otp' as never }), TypeError)
  t.doesNotThrow(() => app.authenticateWith({ maxAuthAge: '5m', requireAmr: ['otp', 'webauthn'] }))
  await app.close()
})

t.test('a consuming service requires a recent authentication or a second factor per route', async (t) => {
  const clock = fakeDate(t, Date.now(), { running: true })
  const service = await startService(t)
  const consumer = Fastify({ logger: false })
  await consumer.register(verifier, { issuer: ISSUER, audience: AUDIENCE, jwksUrl: service.jwksUrl })
  consumer.get('/profile', { onRequest: consumer.authenticate }, async () => ({ ok: true }))
  consumer.post('/transfer', { onRequest: consumer.authenticateWith({ maxAuthAge: '5m' }) }, async () => ({ ok: true }))
  consumer.get('/admin', { onRequest: consumer.authenticateWith({ requireAmr: ['otp', 'webauthn'] }) }, async () => ({ ok: true }))
  await consumer.ready()
  t.teardown(() => consumer.close())

  await register(service.app)
  const { accessToken } = await login(service.app, { transport: 'body' })
  t.equal((await consumer.inject({ method: 'POST', url: '/transfer', headers: bearer(accessToken) })).statusCode, 200, 'fresh login')

  clock.advance(6 * MINUTE)
  t.equal((await consumer.inject({ url: '/profile', headers: bearer(accessToken) })).statusCode, 200, 'routes without requirements still accept it')
  const stale = await consumer.inject({ method: 'POST', url: '/transfer', headers: bearer(accessToken) })
  t.equal(stale.statusCode, 401)
  t.equal(stale.json().code, 'INSUFFICIENT_USER_AUTHENTICATION')
  t.equal(stale.headers['www-authenticate'], 'Bearer realm="auth", error="insufficient_user_authentication", error_description="This requires having authenticated within the last 300 seconds", max_age="300"')

  const stepped = await service.app.inject({ method: 'POST', url: '/api/auth/reauthenticate', headers: bearer(accessToken), payload: { password: PASSWORD } })
  const fresh = stepped.json().accessToken as string
  t.equal((await consumer.inject({ method: 'POST', url: '/transfer', headers: bearer(fresh) })).statusCode, 200, 'after the step-up')

  const noFactor = await consumer.inject({ url: '/admin', headers: bearer(fresh) })
  t.equal(noFactor.statusCode, 401)
  t.equal(noFactor.json().code, 'INSUFFICIENT_USER_AUTHENTICATION')
  t.match(noFactor.headers['www-authenticate'], /error="insufficient_user_authentication".*, acr_values="otp webauthn"$/)

  const { secret } = (await service.app.inject({ method: 'POST', url: '/api/auth/mfa/totp/enroll', headers: bearer(fresh) })).json()
  await service.app.inject({ method: 'POST', url: '/api/auth/mfa/totp/confirm', headers: bearer(fresh), payload: { code: codeAt(secret, clock.now()) } })
  clock.advance(30 * SECOND)
  const otp = await service.app.inject({ method: 'POST', url: '/api/auth/reauthenticate', headers: bearer(fresh), payload: { code: codeAt(secret, clock.now()) } })
  t.equal(otp.statusCode, 200)
  t.equal((await consumer.inject({ url: '/admin', headers: bearer(otp.json().accessToken) })).statusCode, 200, 'amr now holds otp')
})
