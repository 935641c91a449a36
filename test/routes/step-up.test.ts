/** amr and auth_time: set at login, kept across refreshes of the session, raised by a step-up. */
import * as OTPAuth from 'otpauth'
import t from 'tap'
import { buildTestApp, login, PASSWORD, register } from '../support/app.js'
import { fakeDate, MINUTE, SECOND } from '../support/clock.js'
import { rows } from '../support/db.js'
import { decodeJwt } from '../support/jwt.js'

const START = Math.floor(Date.parse('2026-03-01T10:00:00Z') / 30_000) * 30_000 + 5 * SECOND
const codeAt = (secret: string, ms: number): string => new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret) }).generate({ timestamp: ms })
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
const claims = (token: string) => decodeJwt(token).payload
const seconds = (ms: number): number => Math.floor(ms / 1000)

t.test('amr and auth_time through refresh and step-up', async (t) => {
  const clock = fakeDate(t, START)
  const app = await buildTestApp(t)
  await register(app)
  const loggedIn = await login(app, { transport: 'body' })
  const loginTime = seconds(clock.now())
  t.match(claims(loggedIn.accessToken), { amr: ['pwd'], auth_time: loginTime })

  clock.advance(10 * MINUTE)
  const refresh = async (token: string) => (await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: token } })).json()
  let rotated = await refresh(loggedIn.refreshToken)
  t.match(claims(rotated.accessToken), { amr: ['pwd'], auth_time: loginTime }, 'a refresh keeps the login\'s auth_time')
  t.equal(claims(rotated.accessToken).iat, seconds(clock.now()))

  const noToken = await app.inject({ method: 'POST', url: '/api/auth/reauthenticate', payload: { password: PASSWORD } })
  t.equal(noToken.statusCode, 401)
  const wrong = await app.inject({ method: 'POST', url: '/api/auth/reauthenticate', headers: bearer(rotated.accessToken), payload: { password: 'not the password' } })
  t.equal(wrong.statusCode, 403)
  t.equal(wrong.json().code, 'INVALID_CURRENT_PASSWORD')

  const stepUp = await app.inject({ method: 'POST', url: '/api/auth/reauthenticate', headers: bearer(rotated.accessToken), payload: { password: PASSWORD } })
  t.equal(stepUp.statusCode, 200)
  t.equal(stepUp.headers['cache-control'], 'no-store')
  const stepUpTime = seconds(clock.now())
  t.match(claims(stepUp.json().accessToken), { amr: ['pwd'], auth_time: stepUpTime, sid: claims(loggedIn.accessToken).sid })

  clock.advance(5 * MINUTE)
  rotated = await refresh(rotated.refreshToken)
  t.match(claims(rotated.accessToken), { amr: ['pwd'], auth_time: stepUpTime }, 'the raised auth_time is the session\'s now')

  // A step-up with a TOTP code adds otp to the session's amr.
  const enroll = (await app.inject({ method: 'POST', url: '/api/auth/mfa/totp/enroll', headers: bearer(rotated.accessToken) })).json()
  await app.inject({ method: 'POST', url: '/api/auth/mfa/totp/confirm', headers: bearer(rotated.accessToken), payload: { code: codeAt(enroll.secret, clock.now()) } })
  const replayed = await app.inject({ method: 'POST', url: '/api/auth/reauthenticate', headers: bearer(rotated.accessToken), payload: { code: codeAt(enroll.secret, clock.now()) } })
  t.equal(replayed.statusCode, 403, 'the code that confirmed the enrolment is spent')
  t.equal(replayed.json().code, 'MFA_CODE_INVALID')
  clock.advance(30 * SECOND)
  const otp = await app.inject({ method: 'POST', url: '/api/auth/reauthenticate', headers: bearer(rotated.accessToken), payload: { code: codeAt(enroll.secret, clock.now()) } })
  t.equal(otp.statusCode, 200)
  t.match(claims(otp.json().accessToken), { amr: ['pwd', 'otp'], auth_time: seconds(clock.now()) })
  clock.advance(MINUTE)
  rotated = await refresh(rotated.refreshToken)
  t.match(claims(rotated.accessToken), { amr: ['pwd', 'otp'], auth_time: seconds(clock.now() - MINUTE) })
  const events = await rows(app, 'SELECT id FROM audit_events WHERE type = ?', 'reauthenticated')
  t.equal(events.length, 2)
})

t.test('sessions from before amr and auth_time: amr pwd and auth_time the session\'s start', async (t) => {
  const clock = fakeDate(t, START)
  const app = await buildTestApp(t)
  await register(app)
  const { refreshToken } = await login(app, { transport: 'body' })
  const [session] = await rows<{ id: string }>(app, 'SELECT id FROM sessions')
  // What the migration leaves on rows it finds: the column default and no auth_time.
  if (app.database.kind === 'sqlite') app.sqlite.prepare('UPDATE sessions SET auth_time = NULL').run()
  else await rows(app, 'UPDATE sessions SET auth_time = NULL WHERE id = ?', session!.id)
  clock.advance(MINUTE)
  const res = await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken } })
  t.match(claims(res.json().accessToken), { amr: ['pwd'], auth_time: seconds(START) })
})
