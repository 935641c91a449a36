/**
 * TOTP, recovery codes and the MFA step of a login, over HTTP, with a controlled clock: codes
 * are computed for the fake time with the otpauth library, as an authenticator app would.
 */
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import * as OTPAuth from 'otpauth'
import t from 'tap'
import { buildTestApp, cookieOf, login, PASSWORD, register, SAME_ORIGIN, TEST_DATABASE } from '../support/app.js'
import { fakeDate, MINUTE, SECOND, type FakeDate } from '../support/clock.js'
import { rows } from '../support/db.js'
import { decodeJwt } from '../support/jwt.js'

// The start of a 30-second step, so that "the next step" is exactly 30 s later.
const START = Math.floor(Date.parse('2026-03-01T10:00:00Z') / 30_000) * 30_000 + 5 * SECOND
const KEK = 'a'.repeat(64)

const codeAt = (secret: string, ms: number): string =>
  new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret) }).generate({ timestamp: ms })

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** Registers alice, logs in, enrols and confirms TOTP; answers the secret and the recovery codes. */
async function enrolled (app: FastifyInstance, clock: FakeDate): Promise<{ secret: string, recoveryCodes: string[], accessToken: string }> {
  await register(app)
  const { accessToken } = await login(app, { transport: 'body' })
  const enroll = await app.inject({ method: 'POST', url: '/api/auth/mfa/totp/enroll', headers: bearer(accessToken) })
  const { secret } = enroll.json()
  const confirm = await app.inject({ method: 'POST', url: '/api/auth/mfa/totp/confirm', headers: bearer(accessToken), payload: { code: codeAt(secret, clock.now()) } })
  return { secret, recoveryCodes: confirm.json().recoveryCodes, accessToken }
}

async function mfaLogin (app: FastifyInstance, opts: { transport?: 'cookie' | 'body', headers?: Record<string, string> } = {}): Promise<{ mfaToken: string, body: any, statusCode: number }> {
  const res = await app.inject({ method: 'POST', url: '/api/auth/login', headers: opts.headers, payload: { username: 'alice', password: PASSWORD, transport: opts.transport ?? 'body' } })
  return { mfaToken: res.json().mfaToken, body: res.json(), statusCode: res.statusCode }
}

const verify = async (app: FastifyInstance, payload: Record<string, unknown>, headers?: Record<string, string>) =>
  await app.inject({ method: 'POST', url: '/api/auth/mfa/verify', headers, payload })

t.test('enrolment: secret, otpauth URI and QR code; pending until a code confirms it; the secret sealed at rest', async (t) => {
  const clock = fakeDate(t, START)
  const app = await buildTestApp(t, { KEY_ENCRYPTION_KEY: KEK })
  const user = (await register(app)).json()
  const { accessToken } = await login(app, { transport: 'body' })

  const first = await app.inject({ method: 'POST', url: '/api/auth/mfa/totp/enroll', headers: bearer(accessToken) })
  t.equal(first.statusCode, 200)
  t.equal(first.headers['cache-control'], 'no-store')
  const { secret, otpauthUri, qrCode } = first.json()
  t.match(secret, /^[A-Z2-7]{32}$/, '160 bits, base32')
  t.match(otpauthUri, new RegExp(`^otpauth://totp/localhost:alice\\?issuer=localhost&secret=${secret}&algorithm=SHA1&digits=6&period=30$`))
  t.match(qrCode, /^data:image\/png;base64,/)
  const [stored] = await rows<{ secret: string, confirmed_at: unknown }>(app, 'SELECT secret, confirmed_at FROM totp_factors WHERE user_id = ?', user.id)
  t.match(stored!.secret, /^enc:v1:/, 'sealed under KEY_ENCRYPTION_KEY')
  t.notOk(stored!.secret.includes(secret))
  t.equal(stored!.confirmed_at, null)

  // Pending: the password alone still logs in.
  t.equal((await login(app, { transport: 'body' })).res.statusCode, 200)

  // Enrolling again replaces the pending secret: the first one's code no longer confirms.
  const second = (await app.inject({ method: 'POST', url: '/api/auth/mfa/totp/enroll', headers: bearer(accessToken) })).json()
  t.not(second.secret, secret)
  const stale = await app.inject({ method: 'POST', url: '/api/auth/mfa/totp/confirm', headers: bearer(accessToken), payload: { code: codeAt(secret, clock.now()) } })
  t.equal(stale.statusCode, 403)
  t.equal(stale.json().code, 'MFA_CODE_INVALID')

  const confirm = await app.inject({ method: 'POST', url: '/api/auth/mfa/totp/confirm', headers: bearer(accessToken), payload: { code: codeAt(second.secret, clock.now()) } })
  t.equal(confirm.statusCode, 200)
  const { recoveryCodes } = confirm.json()
  t.equal(recoveryCodes.length, 10)
  t.equal(new Set(recoveryCodes).size, 10)
  for (const c of recoveryCodes) t.match(c, /^[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}$/)
  const hashes = await rows<{ code_hash: Buffer }>(app, 'SELECT code_hash FROM recovery_codes WHERE user_id = ?', user.id)
  t.equal(hashes.length, 10)
  t.notOk(hashes.some((h) => recoveryCodes.some((c: string) => Buffer.from(h.code_hash).toString('utf8').includes(c.replace(/-/g, '')))), 'stored as digests')

  // Active now: enrolling again is refused until it is disabled.
  const again = await app.inject({ method: 'POST', url: '/api/auth/mfa/totp/enroll', headers: bearer(accessToken) })
  t.equal(again.statusCode, 409)
  t.equal(again.json().code, 'TOTP_ALREADY_ENABLED')
  const events = await rows<{ type: string }>(app, 'SELECT type FROM audit_events WHERE user_id = ? AND type = ?', user.id, 'totp_enabled')
  t.equal(events.length, 1)
})

t.test('in production, TOTP is refused without KEY_ENCRYPTION_KEY: no secret is ever stored in clear', async (t) => {
  fakeDate(t, START)
  // A production configuration (argon2 at its production floor, rate limits on, a file database).
  const production = (extra: Record<string, string | undefined>) => ({
    NODE_ENV: 'production',
    ARGON2_MEMORY_KIB: '19456',
    ARGON2_TIME_COST: '2',
    RATE_LIMIT_ENABLED: 'true',
    ...(TEST_DATABASE === 'sqlite' ? { DATABASE_URL: `file:${join(t.testdir(), 'auth.db')}` } : {}),
    ...extra
  })
  const enrol = async (app: FastifyInstance) => {
    const user = (await register(app)).json()
    const { accessToken } = await login(app, { transport: 'body' })
    const res = await app.inject({ method: 'POST', url: '/api/auth/mfa/totp/enroll', headers: bearer(accessToken) })
    const stored = await rows<{ secret: string }>(app, 'SELECT secret FROM totp_factors WHERE user_id = ?', user.id)
    return { res, stored }
  }

  const without = await enrol(await buildTestApp(t, production({})))
  t.equal(without.res.statusCode, 503)
  t.same(Object.keys(without.res.json()).sort(), ['code', 'message', 'statusCode'])
  t.equal(without.res.json().code, 'TOTP_UNAVAILABLE')
  t.equal(without.res.headers['retry-after'], '3600', 'a setting, not a passing fault: retry in an hour')
  t.same(without.stored, [], 'nothing stored')

  const withKey = await enrol(await buildTestApp(t, production({ KEY_ENCRYPTION_KEY: KEK })))
  t.equal(withKey.res.statusCode, 200)
  t.match(withKey.stored[0]!.secret, /^enc:v1:/, 'sealed')
})

t.test('login with TOTP: 202 with an mfaToken, then the code finishes it with amr pwd+otp', async (t) => {
  const clock = fakeDate(t, START)
  const app = await buildTestApp(t)
  const { secret } = await enrolled(app, clock)
  clock.advance(30 * SECOND)

  const challenge = await mfaLogin(app)
  t.equal(challenge.statusCode, 202)
  t.same(Object.keys(challenge.body).sort(), ['methods', 'mfaRequired', 'mfaToken'])
  t.equal(challenge.body.mfaRequired, true)
  t.same(challenge.body.methods, ['totp', 'recovery'])
  t.match(challenge.mfaToken, /^[A-Za-z0-9_-]{43}$/)

  const res = await verify(app, { mfaToken: challenge.mfaToken, code: codeAt(secret, clock.now()) })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  const body = res.json()
  t.type(body.refreshToken, 'string', 'body mode, as the login asked')
  const { payload } = decodeJwt(body.accessToken)
  t.same(payload.amr, ['pwd', 'otp'])
  t.equal(payload.auth_time, Math.floor(clock.now() / 1000))

  // Spent: the same mfaToken does not work twice, even with a fresh code.
  clock.advance(30 * SECOND)
  const twice = await verify(app, { mfaToken: challenge.mfaToken, code: codeAt(secret, clock.now()) })
  t.equal(twice.statusCode, 401)
  t.equal(twice.json().code, 'MFA_TOKEN_INVALID')
})

t.test('cookie mode: the verify step sets the refresh cookie and follows the login\'s origin rules', async (t) => {
  const clock = fakeDate(t, START)
  const app = await buildTestApp(t)
  const { secret } = await enrolled(app, clock)
  clock.advance(30 * SECOND)
  const { mfaToken } = await mfaLogin(app, { transport: 'cookie', headers: SAME_ORIGIN })
  const crossSite = await verify(app, { mfaToken, code: codeAt(secret, clock.now()) }, { origin: 'https://evil.example' })
  t.equal(crossSite.statusCode, 403)
  t.equal(crossSite.json().code, 'CROSS_SITE_REQUEST')
  const res = await verify(app, { mfaToken, code: codeAt(secret, clock.now()) }, SAME_ORIGIN)
  t.equal(res.statusCode, 200)
  t.equal(res.json().refreshToken, undefined)
  t.ok(cookieOf(res))
})

t.test('the mfaToken is bound to the client and is neither an access nor a refresh token', async (t) => {
  const clock = fakeDate(t, START)
  const app = await buildTestApp(t)
  const { secret } = await enrolled(app, clock)
  clock.advance(30 * SECOND)
  const { mfaToken } = await mfaLogin(app, { headers: { 'user-agent': 'browser A' } })

  const asAccess = await app.inject({ method: 'GET', url: '/api/auth/me', headers: bearer(mfaToken) })
  t.equal(asAccess.statusCode, 401)
  t.equal(asAccess.json().code, 'ACCESS_TOKEN_INVALID')
  const asRefresh = await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: mfaToken } })
  t.equal(asRefresh.statusCode, 401)
  t.equal(asRefresh.json().code, 'REFRESH_TOKEN_INVALID')

  const otherClient = await verify(app, { mfaToken, code: codeAt(secret, clock.now()) }, { 'user-agent': 'browser B' })
  t.equal(otherClient.statusCode, 401)
  t.equal(otherClient.json().code, 'MFA_TOKEN_INVALID')
  const sameClient = await verify(app, { mfaToken, code: codeAt(secret, clock.now()) }, { 'user-agent': 'browser A' })
  t.equal(sameClient.statusCode, 200)
})

t.test('the mfaToken expires after 5 minutes and dies with a credential change', async (t) => {
  const clock = fakeDate(t, START)
  const app = await buildTestApp(t)
  const { secret, accessToken } = await enrolled(app, clock)

  const late = await mfaLogin(app)
  clock.advance(5 * MINUTE)
  const expired = await verify(app, { mfaToken: late.mfaToken, code: codeAt(secret, clock.now()) })
  t.equal(expired.statusCode, 401)
  t.equal(expired.json().code, 'MFA_TOKEN_INVALID')

  const before = await mfaLogin(app)
  // Logout-all raises the account's security stamp, as a password change or a disable does.
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/logout-all', headers: bearer(accessToken) })).statusCode, 204)
  clock.advance(30 * SECOND)
  const changed = await verify(app, { mfaToken: before.mfaToken, code: codeAt(secret, clock.now()) })
  t.equal(changed.statusCode, 401)
  t.equal(changed.json().code, 'MFA_TOKEN_INVALID')
})

t.test('a code works once (replay refused) with one step of drift either side', async (t) => {
  const clock = fakeDate(t, START)
  const app = await buildTestApp(t)
  const { secret } = await enrolled(app, clock)
  const confirmedWith = codeAt(secret, clock.now())

  // The code that confirmed the enrolment is spent: same step, refused.
  let { mfaToken } = await mfaLogin(app)
  const replay = await verify(app, { mfaToken, code: confirmedWith })
  t.equal(replay.statusCode, 403)
  t.equal(replay.json().code, 'MFA_CODE_INVALID')

  // Two steps later, the code of one step before now (drift) is accepted: its step is newer than the last used.
  clock.advance(60 * SECOND)
  const drifted = await verify(app, { mfaToken, code: codeAt(secret, clock.now() - 30 * SECOND) })
  t.equal(drifted.statusCode, 200, 'previous step accepted')
  // ... and then the current step's code too, but no longer the one just used nor an older one.
  ;({ mfaToken } = await mfaLogin(app))
  t.equal((await verify(app, { mfaToken, code: codeAt(secret, clock.now() - 30 * SECOND) })).statusCode, 403, 'the same code again')
  t.equal((await verify(app, { mfaToken, code: codeAt(secret, clock.now()) })).statusCode, 200, 'current step')
  // A code of the next step (the phone's clock ahead) is accepted; two steps ahead is not.
  ;({ mfaToken } = await mfaLogin(app))
  t.equal((await verify(app, { mfaToken, code: codeAt(secret, clock.now() + 60 * SECOND) })).statusCode, 403, 'two steps ahead')
  t.equal((await verify(app, { mfaToken, code: codeAt(secret, clock.now() + 30 * SECOND) })).statusCode, 200, 'next step')
})

t.test('wrong codes count in the per-account throttle like wrong passwords', async (t) => {
  const clock = fakeDate(t, START)
  const app = await buildTestApp(t, { RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: '3' })
  const { secret } = await enrolled(app, clock)
  clock.advance(30 * SECOND)
  const { mfaToken } = await mfaLogin(app)
  for (let i = 0; i < 3; i++) {
    const wrong = await verify(app, { mfaToken, code: '000000' === codeAt(secret, clock.now()) ? '111111' : '000000' })
    t.equal(wrong.statusCode, 403)
  }
  const right = await verify(app, { mfaToken, code: codeAt(secret, clock.now()) })
  t.equal(right.statusCode, 429, 'the right code is refused too once the budget is spent')
  t.ok(right.headers['retry-after'])
  // A right password does not clear the wrong codes: the login itself is throttled now.
  const password = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'alice', password: PASSWORD } })
  t.equal(password.statusCode, 429)
  const failures = await rows(app, 'SELECT id FROM audit_events WHERE type = ?', 'mfa_failed')
  t.equal(failures.length, 3)
})

t.test('recovery codes: each works once, is audited, and a new set voids the old', async (t) => {
  const clock = fakeDate(t, START)
  const app = await buildTestApp(t)
  const { recoveryCodes, accessToken } = await enrolled(app, clock)

  let { mfaToken } = await mfaLogin(app)
  const used = await verify(app, { mfaToken, recoveryCode: recoveryCodes[0]!.toUpperCase() })
  t.equal(used.statusCode, 200)
  t.same(decodeJwt(used.json().accessToken).payload.amr, ['pwd', 'recovery'])
  const [event] = await rows<{ detail: unknown }>(app, 'SELECT detail FROM audit_events WHERE type = ?', 'recovery_code_used')
  t.same(typeof event!.detail === 'string' ? JSON.parse(event!.detail) : event!.detail, { remaining: 9 })

  ;({ mfaToken } = await mfaLogin(app))
  const again = await verify(app, { mfaToken, recoveryCode: recoveryCodes[0] })
  t.equal(again.statusCode, 403, 'single use')
  t.equal(again.json().code, 'MFA_CODE_INVALID')

  const wrongPassword = await app.inject({ method: 'POST', url: '/api/auth/mfa/recovery-codes', headers: bearer(accessToken), payload: { password: 'not the password' } })
  t.equal(wrongPassword.statusCode, 403)
  const regenerated = await app.inject({ method: 'POST', url: '/api/auth/mfa/recovery-codes', headers: bearer(accessToken), payload: { password: PASSWORD } })
  t.equal(regenerated.statusCode, 200)
  const fresh = regenerated.json().recoveryCodes
  t.equal(fresh.length, 10)
  const old = await verify(app, { mfaToken, recoveryCode: recoveryCodes[1] })
  t.equal(old.statusCode, 403, 'the old set is void')
  t.equal((await verify(app, { mfaToken, recoveryCode: fresh[0] })).statusCode, 200)
})

t.test('a passkey assertion answers PASSKEY_FACTOR_UNAVAILABLE for an account without a passkey; one factor at a time', async (t) => {
  const clock = fakeDate(t, START)
  const app = await buildTestApp(t)
  const { secret, accessToken } = await enrolled(app, clock)
  const { mfaToken } = await mfaLogin(app)
  const passkey = await verify(app, { mfaToken, webauthn: { id: 'x', response: {} } })
  t.equal(passkey.statusCode, 400)
  t.equal(passkey.json().code, 'PASSKEY_FACTOR_UNAVAILABLE')
  const both = await verify(app, { mfaToken, code: codeAt(secret, clock.now()), recoveryCode: 'aaaa-bbbb-cccc' })
  t.equal(both.statusCode, 400)
  t.equal(both.json().code, 'VALIDATION_FAILED')
  const stepUp = await app.inject({ method: 'POST', url: '/api/auth/reauthenticate', headers: bearer(accessToken), payload: { webauthn: {} } })
  t.equal(stepUp.statusCode, 400)
  t.equal(stepUp.json().code, 'PASSKEY_FACTOR_UNAVAILABLE')
})

t.test('disabling TOTP needs the password and a code; then the password alone logs in', async (t) => {
  const clock = fakeDate(t, START)
  const app = await buildTestApp(t)
  const { secret, accessToken } = await enrolled(app, clock)
  clock.advance(30 * SECOND)
  const del = (payload: Record<string, unknown>) => app.inject({ method: 'DELETE', url: '/api/auth/mfa/totp', headers: bearer(accessToken), payload })
  t.equal((await del({ password: PASSWORD })).statusCode, 400)
  t.equal((await del({ password: 'wrong password!', code: codeAt(secret, clock.now()) })).statusCode, 403)
  t.equal((await del({ password: PASSWORD, code: '12345' })).statusCode, 403)
  t.equal((await del({ password: PASSWORD, code: codeAt(secret, clock.now()) })).statusCode, 204)
  t.equal((await login(app, { transport: 'body' })).res.statusCode, 200)
  t.equal((await rows(app, 'SELECT id FROM recovery_codes')).length, 0)
})

t.test('MFA_REQUIRED_ROLES: a user of such a role without a factor enrols at login, which then finishes', async (t) => {
  const clock = fakeDate(t, START)
  const app = await buildTestApp(t, { MFA_REQUIRED_ROLES: 'admin, user' })
  await register(app)
  const { mfaToken, body, statusCode } = await mfaLogin(app)
  t.equal(statusCode, 202)
  t.same(Object.keys(body).sort(), ['mfaEnrollmentRequired', 'mfaToken'])
  // The enrolment token is not a login challenge.
  t.equal((await verify(app, { mfaToken, code: '123456' })).json().code, 'MFA_TOKEN_INVALID')

  const enroll = await app.inject({ method: 'POST', url: '/api/auth/mfa/totp/enroll', payload: { mfaToken } })
  t.equal(enroll.statusCode, 200)
  const { secret } = enroll.json()
  const confirm = await app.inject({ method: 'POST', url: '/api/auth/mfa/totp/confirm', payload: { mfaToken, code: codeAt(secret, clock.now()) } })
  t.equal(confirm.statusCode, 200)
  const done = confirm.json()
  t.equal(done.recoveryCodes.length, 10)
  t.type(done.refreshToken, 'string')
  t.same(decodeJwt(done.accessToken).payload.amr, ['pwd', 'otp'])
  // Spent with the confirmation.
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/mfa/totp/enroll', payload: { mfaToken } })).statusCode, 401)
  // From now on the login asks for the factor.
  t.equal((await mfaLogin(app)).body.mfaRequired, true)

  const other = await buildTestApp(t, { MFA_REQUIRED_ROLES: 'admin' })
  await register(other)
  t.equal((await login(other)).res.statusCode, 200, 'roles not listed log in with the password alone')
})
