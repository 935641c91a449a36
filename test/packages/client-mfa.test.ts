/**
 * The client library's second-factor calls against a really listening service, from Node
 * (whose fetch keeps no cookies: the flows here need none, the access token is in memory).
 * Without BroadcastChannel, as in an environment that has none (Node's would keep the test
 * process alive), with the clock of test/support/clock.ts moved on where a user would wait.
 */
import * as OTPAuth from 'otpauth'
import t from 'tap'
import { fakeDate, SECOND } from '../support/clock.js'
import { loadAuthClient } from '../support/client.js'
import { decodeJwt } from '../support/jwt.js'
import { listen, PASSWORD, registerUser } from '../support/server.js'

// What the test uses of the client (loaded untyped: test/support/client.ts), typed here.
interface Client {
  login: (username: string, password: string) => Promise<unknown>
  verifyMfa: (factor: Record<string, string>) => Promise<void>
  enrollTotp: () => Promise<{ secret: string, qrCode: string }>
  confirmTotp: (code: string) => Promise<string[]>
  reauthenticate: (credential: Record<string, string>) => Promise<void>
  regenerateRecoveryCodes: (password: string) => Promise<string[]>
  readonly authenticated: boolean
  readonly accessToken: string | null
}
const { AuthError, createAuthClient } = await loadAuthClient<Client>()

const codeAt = (secret: string, ms: number): string => new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret) }).generate({ timestamp: ms })

t.test('enrol TOTP, log in with a code, then with a recovery code, then step up', async (t) => {
  const clock = fakeDate(t, Date.now(), { running: true })
  const channel = globalThis.BroadcastChannel
  ;(globalThis as { BroadcastChannel?: unknown }).BroadcastChannel = undefined
  t.teardown(() => { globalThis.BroadcastChannel = channel })
  const served = await listen(t)
  await registerUser(served, 'alice')
  const client = createAuthClient({ baseUrl: served.base })
  t.same(await client.login('alice', PASSWORD), { status: 'signed-in' })

  const enrolment = await client.enrollTotp()
  t.match(enrolment.qrCode, /^data:image\/png;base64,/)
  const recoveryCodes = await client.confirmTotp(codeAt(enrolment.secret, Date.now()))
  t.equal(recoveryCodes.length, 10)

  const other = createAuthClient({ baseUrl: served.base })
  t.same(await other.login('alice', PASSWORD), { status: 'mfa-required', methods: ['totp', 'recovery'] })
  t.equal(other.authenticated, false)
  await t.rejects(other.verifyMfa({ code: '000000' === codeAt(enrolment.secret, Date.now()) ? '111111' : '000000' }), new AuthError(403, 'MFA_CODE_INVALID', 'The code is not valid'))
  // The confirming code's step is spent: wait for the next one, as a user would.
  clock.advance(30 * SECOND)
  await other.verifyMfa({ code: codeAt(enrolment.secret, Date.now()) })
  t.equal(other.authenticated, true)
  t.same(decodeJwt(other.accessToken!).payload.amr, ['pwd', 'otp'])

  const third = createAuthClient({ baseUrl: served.base })
  await third.login('alice', PASSWORD)
  await third.verifyMfa({ recoveryCode: recoveryCodes[0]! })
  t.same(decodeJwt(third.accessToken!).payload.amr, ['pwd', 'recovery'])

  const before = decodeJwt(third.accessToken!).payload.auth_time as number
  clock.advance(10 * SECOND)
  await third.reauthenticate({ password: PASSWORD })
  t.ok((decodeJwt(third.accessToken!).payload.auth_time as number) > before, 'auth_time raised')

  const fresh = await third.regenerateRecoveryCodes(PASSWORD)
  t.equal(fresh.length, 10)
})
