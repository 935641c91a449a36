/**
 * E-mail addresses on accounts, over HTTP: registering with one (normalised, checked, unique
 * case-insensitively), logging in by it as LOGIN_IDENTIFIERS allows, and GET /me showing it.
 * Runs on SQLite and, with TEST_DATABASE=postgres, on PostgreSQL.
 */
import type { FastifyInstance } from 'fastify'
import * as OTPAuth from 'otpauth'
import t from 'tap'
import { PASSWORD, bearer, buildTestApp, refreshWithBody } from '../support/app.js'
import { fakeDate, SECOND } from '../support/clock.js'
import { decodeJwt } from '../support/jwt.js'
import { SoftAuthenticator } from '../support/webauthn.js'

async function registerWith (app: FastifyInstance, username: string, email?: string) {
  return await app.inject({ method: 'POST', url: '/api/auth/register', payload: { username, password: PASSWORD, ...(email === undefined ? {} : { email }) } })
}

async function loginBy (app: FastifyInstance, payload: Record<string, string>) {
  return await app.inject({ method: 'POST', url: '/api/auth/login', payload: { password: PASSWORD, transport: 'body', ...payload } })
}

t.test('register with an address: stored normalised (trimmed, NFC, domain lower-cased), shown with emailVerified false', async (t) => {
  const app = await buildTestApp(t)
  const res = await registerWith(app, 'alice', '  Ali\u0301ce@Example.TEST ')
  t.equal(res.statusCode, 201, res.body)
  t.match(res.json(), { username: 'alice', email: 'Al\u00edce@example.test', emailVerified: false })
  const login = await loginBy(app, { username: 'alice' })
  const me = await app.inject({ url: '/api/auth/me', headers: bearer(login.json().accessToken) })
  t.equal(me.statusCode, 200)
  t.match(me.json(), { username: 'alice', email: 'Al\u00edce@example.test', emailVerified: false })
})

t.test('an account without an address shows email null', async (t) => {
  const app = await buildTestApp(t)
  t.match((await registerWith(app, 'bob')).json(), { email: null, emailVerified: false })
})

t.test('an address is unique case-insensitively: 409 EMAIL_TAKEN, and nothing is created', async (t) => {
  const app = await buildTestApp(t)
  t.equal((await registerWith(app, 'alice', 'alice@example.test')).statusCode, 201)
  const again = await registerWith(app, 'alice2', 'ALICE@Example.Test')
  t.equal(again.statusCode, 409)
  t.same(again.json(), { statusCode: 409, code: 'EMAIL_TAKEN', message: 'This e-mail address is not available' })
  t.equal((await loginBy(app, { username: 'alice2' })).statusCode, 401, 'the second account was not created')
})

t.test('a malformed or overlong address is refused with 400 INVALID_EMAIL', async (t) => {
  const app = await buildTestApp(t)
  for (const bad of ['no-at-sign', 'a@b', 'two@@example.test', 'sp ace@example.test', 'new\nline@example.test', `${'x'.repeat(65)}@example.test`, `a@${'d'.repeat(250)}.test`, 'ctl\u0007@example.test']) {
    const res = await registerWith(app, 'carol', bad)
    t.equal(res.statusCode, 400, bad)
    t.equal(res.json().code, 'INVALID_EMAIL', bad)
  }
  t.equal((await registerWith(app, 'carol', 'carol+tag@sub.example.test')).statusCode, 201)
})

t.test('log in by address (any case) or by username; a wrong password by address is the usual 401', async (t) => {
  const app = await buildTestApp(t)
  await registerWith(app, 'dave', 'Dave@example.test')
  t.equal((await loginBy(app, { email: 'dave@EXAMPLE.test' })).statusCode, 200)
  t.equal((await loginBy(app, { email: ' DAVE@example.test ' })).statusCode, 200)
  t.equal((await loginBy(app, { username: 'dave' })).statusCode, 200)
  const wrong = await loginBy(app, { email: 'dave@example.test', password: 'not the password at all' })
  const unknown = await loginBy(app, { email: 'nobody@example.test' })
  t.equal(wrong.statusCode, 401)
  t.same(unknown.json(), wrong.json(), 'an unknown address answers as a wrong password')
  t.equal((await loginBy(app, { username: 'dave', email: 'dave@example.test' })).statusCode, 400, 'one identifier, not both')
})

t.test('LOGIN_IDENTIFIERS says which identifiers a login accepts', async (t) => {
  const onlyName = await buildTestApp(t, { LOGIN_IDENTIFIERS: 'username' })
  await registerWith(onlyName, 'erin', 'erin@example.test')
  const refused = await loginBy(onlyName, { email: 'erin@example.test' })
  t.equal(refused.statusCode, 400)
  t.equal(refused.json().code, 'LOGIN_IDENTIFIER_REFUSED')
  t.equal((await loginBy(onlyName, { username: 'erin' })).statusCode, 200)

  const onlyEmail = await buildTestApp(t, { LOGIN_IDENTIFIERS: 'email' })
  await registerWith(onlyEmail, 'frank', 'frank@example.test')
  t.equal((await loginBy(onlyEmail, { username: 'frank' })).json().code, 'LOGIN_IDENTIFIER_REFUSED')
  t.equal((await loginBy(onlyEmail, { email: 'frank@example.test' })).statusCode, 200)
})

t.test('failed logins by address and by username share the account\'s budget', async (t) => {
  const app = await buildTestApp(t, { RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: '2' })
  await registerWith(app, 'grace', 'grace@example.test')
  await loginBy(app, { email: 'grace@example.test', password: 'wrong password number one' })
  await loginBy(app, { username: 'GRACE', password: 'wrong password number two' })
  t.equal((await loginBy(app, { email: 'grace@example.test' })).statusCode, 429)
})

t.test('access tokens of an account with an address carry email_verified, at login and after a refresh; without one, no such claim', async (t) => {
  const app = await buildTestApp(t)
  await registerWith(app, 'heidi', 'heidi@example.test')
  await registerWith(app, 'ivan')
  const withEmail = (await loginBy(app, { email: 'heidi@example.test' })).json()
  t.equal(decodeJwt(withEmail.accessToken).payload.email_verified, false)
  const refreshed = (await refreshWithBody(app, withEmail.refreshToken)).json()
  t.equal(decodeJwt(refreshed.accessToken).payload.email_verified, false, 'kept across a refresh')
  const without = (await loginBy(app, { username: 'ivan' })).json()
  t.notOk('email_verified' in decodeJwt(without.accessToken).payload)
  t.notOk('email_verified' in decodeJwt((await refreshWithBody(app, without.refreshToken)).json().accessToken).payload)
})

t.test('sessions started by a second factor or a passkey, and step-ups, carry email_verified beside amr and auth_time', async (t) => {
  // The start of a 30-second TOTP step, so that the next code is exactly 30 s later.
  const clock = fakeDate(t, Math.floor(Date.parse('2026-03-01T10:00:00Z') / 30_000) * 30_000 + 5 * SECOND)
  const codeAt = (secret: string, ms: number): string => new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret) }).generate({ timestamp: ms })
  const app = await buildTestApp(t)
  await registerWith(app, 'judy', 'judy@example.test')
  const first = (await loginBy(app, { username: 'judy' })).json()
  const { secret } = (await app.inject({ method: 'POST', url: '/api/auth/mfa/totp/enroll', headers: bearer(first.accessToken) })).json()
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/mfa/totp/confirm', headers: bearer(first.accessToken), payload: { code: codeAt(secret, clock.now()) } })).statusCode, 200)
  clock.advance(30 * SECOND)

  // A login by address that needs the second factor, finished by /mfa/verify.
  const challenge = await loginBy(app, { email: 'judy@example.test' })
  t.equal(challenge.statusCode, 202, challenge.body)
  const verified = await app.inject({ method: 'POST', url: '/api/auth/mfa/verify', payload: { mfaToken: challenge.json().mfaToken, code: codeAt(secret, clock.now()) } })
  t.equal(verified.statusCode, 200, verified.body)
  const authTime = Math.floor(clock.now() / 1000)
  t.match(decodeJwt(verified.json().accessToken).payload, { email_verified: false, amr: ['pwd', 'otp'], auth_time: authTime }, 'after /mfa/verify')
  t.match(decodeJwt((await refreshWithBody(app, verified.json().refreshToken)).json().accessToken).payload, { email_verified: false, amr: ['pwd', 'otp'], auth_time: authTime }, 'after its refresh')

  // A step-up.
  clock.advance(30 * SECOND)
  const stepped = await app.inject({ method: 'POST', url: '/api/auth/reauthenticate', headers: bearer(verified.json().accessToken), payload: { password: PASSWORD } })
  t.equal(stepped.statusCode, 200, stepped.body)
  t.match(decodeJwt(stepped.json().accessToken).payload, { email_verified: false, amr: ['pwd', 'otp'], auth_time: Math.floor(clock.now() / 1000) }, 'after /reauthenticate')

  // A passkey sign-in.
  const authenticator = new SoftAuthenticator()
  const registration = await app.inject({ method: 'POST', url: '/api/auth/passkeys/register/options', headers: bearer(verified.json().accessToken) })
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/passkeys/register', headers: bearer(verified.json().accessToken), payload: { response: authenticator.register(registration.json()) } })).statusCode, 201)
  const options = (await app.inject({ method: 'POST', url: '/api/auth/passkeys/login/options' })).json()
  const passkey = await app.inject({ method: 'POST', url: '/api/auth/passkeys/login', payload: { response: authenticator.assert(options), transport: 'body' } })
  t.equal(passkey.statusCode, 200, passkey.body)
  t.match(decodeJwt(passkey.json().accessToken).payload, { email_verified: false, amr: ['webauthn'] }, 'after a passkey sign-in')
})
