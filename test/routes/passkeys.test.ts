/**
 * Passkeys over HTTP: registration, sign-in with a passkey alone, list/rename/delete, and the
 * ceremonies' refusals (challenge unknown, expired, reused or another's; wrong origin; unknown
 * credential; a counter that does not advance). The attestations and assertions come from a
 * software authenticator (test/support/webauthn.ts) that signs real WebAuthn structures.
 */
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { bearer, buildTestApp, login, PASSWORD, register, SAME_ORIGIN } from '../support/app.js'
import { fakeDate, MINUTE } from '../support/clock.js'
import { claimsOf } from '../support/jwt.js'
import { queryPostgres } from '../support/pg.js'
import { SoftAuthenticator } from '../support/webauthn.js'

async function signedIn (app: FastifyInstance, username = 'alice'): Promise<string> {
  await register(app, username)
  return (await login(app, { username, transport: 'body' })).accessToken
}

async function registrationOptions (app: FastifyInstance, token: string) {
  const res = await app.inject({ method: 'POST', url: '/api/auth/passkeys/register/options', headers: bearer(token) })
  return res.json()
}

async function registerPasskey (app: FastifyInstance, token: string, authenticator: SoftAuthenticator, name?: string) {
  const options = await registrationOptions(app, token)
  return await app.inject({
    method: 'POST', url: '/api/auth/passkeys/register', headers: bearer(token),
    payload: { response: authenticator.register(options), ...(name === undefined ? {} : { name }) }
  })
}

async function loginOptions (app: FastifyInstance) {
  return (await app.inject({ method: 'POST', url: '/api/auth/passkeys/login/options' })).json()
}

async function passkeyLogin (app: FastifyInstance, response: unknown, transport: 'body' | 'cookie' = 'body', headers: Record<string, string> = {}) {
  return await app.inject({ method: 'POST', url: '/api/auth/passkeys/login', headers, payload: { response, transport } })
}

/** The audit events of `type` once `n` of them are written (audit.record does not wait for its write). */
async function events (app: FastifyInstance, type: string, n = 1) {
  for (;;) {
    const found = await app.repos.audit.list({ type })
    if (found.length >= n) return found
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

t.test('registration: options for a discoverable credential, 201, listed, excluded from the next options', async (t) => {
  const app = await buildTestApp(t)
  const token = await signedIn(app)
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/passkeys/register/options' })).statusCode, 401, 'options need the Bearer session')

  const options = await registrationOptions(app, token)
  t.equal(options.rp.id, 'localhost', 'RP id is PUBLIC_URL\'s hostname')
  t.equal(options.user.name, 'alice')
  t.equal(options.authenticatorSelection.residentKey, 'required')
  t.equal(options.authenticatorSelection.userVerification, 'preferred')
  t.same(options.excludeCredentials, [])

  const authenticator = new SoftAuthenticator()
  const res = await registerPasskey(app, token, authenticator, 'Laptop')
  t.equal(res.statusCode, 201, 'registered')
  const created = res.json()
  t.equal(created.name, 'Laptop')
  t.match(created, { id: String, createdAt: String, lastUsedAt: null })

  const second = new SoftAuthenticator()
  t.equal((await registerPasskey(app, token, second)).statusCode, 201, 'a user can have several passkeys')

  const list = await app.inject({ method: 'GET', url: '/api/auth/passkeys', headers: bearer(token) })
  t.same(list.json().map((p: { id: string }) => p.id).includes(created.id), true)
  t.equal(list.json().length, 2)

  const next = await registrationOptions(app, token)
  t.same(next.excludeCredentials.map((c: { id: string }) => c.id).sort(), [authenticator.id, second.id].sort(), 'existing passkeys are excluded')
  t.equal((await events(app, 'passkey_registered', 2)).length, 2)
})

t.test('registration refusals: reused, expired, another user\'s or made-up challenge; wrong origin; a credential registered twice', async (t) => {
  const clock = fakeDate(t, Date.now(), { running: true })
  const app = await buildTestApp(t)
  const alice = await signedIn(app, 'alice')
  const bob = await signedIn(app, 'bob')

  const options = await registrationOptions(app, alice)
  const authenticator = new SoftAuthenticator()
  const attestation = authenticator.register(options)
  const ok = await app.inject({ method: 'POST', url: '/api/auth/passkeys/register', headers: bearer(alice), payload: { response: attestation } })
  t.equal(ok.statusCode, 201)

  const reused = await app.inject({ method: 'POST', url: '/api/auth/passkeys/register', headers: bearer(alice), payload: { response: new SoftAuthenticator().register(options) } })
  t.equal(reused.statusCode, 400, 'a spent challenge is refused')
  t.equal(reused.json().code, 'PASSKEY_REGISTRATION_FAILED')
  t.match(reused.json().message, /already used or expired/)

  const forBob = await registrationOptions(app, bob)
  const stolen = await app.inject({ method: 'POST', url: '/api/auth/passkeys/register', headers: bearer(alice), payload: { response: new SoftAuthenticator().register(forBob) } })
  t.equal(stolen.statusCode, 400, 'a challenge is bound to the user who asked for it')
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/passkeys/register', headers: bearer(bob), payload: { response: new SoftAuthenticator().register(forBob) } })).statusCode, 201,
    'another user cannot spend it: it still serves its owner')

  const madeUp = await app.inject({ method: 'POST', url: '/api/auth/passkeys/register', headers: bearer(alice), payload: { response: new SoftAuthenticator().register({ ...await registrationOptions(app, alice), challenge: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' }) } })
  t.equal(madeUp.statusCode, 400)

  const late = await registrationOptions(app, alice)
  clock.advance(5 * MINUTE + 1000)
  const expired = await app.inject({ method: 'POST', url: '/api/auth/passkeys/register', headers: bearer(alice), payload: { response: new SoftAuthenticator().register(late) } })
  t.equal(expired.statusCode, 400, 'an expired challenge is refused')
  t.match(expired.json().message, /already used or expired/)

  const wrongOrigin = await app.inject({ method: 'POST', url: '/api/auth/passkeys/register', headers: bearer(alice), payload: { response: new SoftAuthenticator().register(await registrationOptions(app, alice), { origin: 'https://evil.example' }) } })
  t.equal(wrongOrigin.statusCode, 400)
  t.match(wrongOrigin.json().message, /does not verify/)

  const wrongRp = await app.inject({ method: 'POST', url: '/api/auth/passkeys/register', headers: bearer(alice), payload: { response: new SoftAuthenticator().register(await registrationOptions(app, alice), { rpId: 'evil.example' }) } })
  t.equal(wrongRp.statusCode, 400, 'an RP id hash of another site is refused')

  const twice = await app.inject({ method: 'POST', url: '/api/auth/passkeys/register', headers: bearer(bob), payload: { response: authenticator.register(await registrationOptions(app, bob)) } })
  t.equal(twice.statusCode, 400, 'a credential id already registered is refused')
  t.match(twice.json().message, /registered already/)

  const list = await app.inject({ method: 'GET', url: '/api/auth/passkeys', headers: bearer(alice) })
  t.equal(list.json().length, 1, 'only alice\'s one good registration was stored')
})

t.test('sign in with a passkey alone: no allowCredentials, tokens as a login, in body and cookie mode', async (t) => {
  const app = await buildTestApp(t)
  const token = await signedIn(app)
  const authenticator = new SoftAuthenticator()
  t.equal((await registerPasskey(app, token, authenticator)).statusCode, 201)

  const options = await loginOptions(app)
  t.equal(options.rpId, 'localhost')
  t.notOk(options.allowCredentials?.length, 'discoverable: no allowCredentials')
  t.equal(options.userVerification, 'preferred')

  const res = await passkeyLogin(app, authenticator.assert(options))
  t.equal(res.statusCode, 200, 'signed in')
  t.equal(res.headers['cache-control'], 'no-store')
  const body = res.json()
  t.ok(body.refreshToken, 'body mode returns the refresh token')
  const me = await app.inject({ method: 'GET', url: '/api/auth/me', headers: bearer(body.accessToken) })
  t.equal(me.json().username, 'alice', 'the access token is alice\'s')
  const [succeeded] = (await events(app, 'login_succeeded', 2)).filter((e) => e.detail?.method === 'webauthn')
  t.ok(succeeded, 'the login is audited as a passkey login')
  const claims = claimsOf(body.accessToken)
  t.same(claims.amr, ['webauthn'], 'the access token says a passkey signed in, not a password')
  t.type(claims.auth_time, 'number')
  const refreshed = await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: body.refreshToken } })
  t.same(claimsOf(refreshed.json().accessToken).amr, ['webauthn'], 'and keeps saying so across refreshes')

  const crossSite = await passkeyLogin(app, authenticator.assert(await loginOptions(app)), 'cookie', { origin: 'https://evil.example' })
  t.equal(crossSite.statusCode, 403, 'cookie mode keeps the cross-site rules of login')
  t.equal(crossSite.json().code, 'CROSS_SITE_REQUEST')

  const cookie = await passkeyLogin(app, authenticator.assert(await loginOptions(app)), 'cookie', SAME_ORIGIN)
  t.equal(cookie.statusCode, 200, 'signed in, cookie mode')
  t.notOk(cookie.json().refreshToken)
  t.ok(cookie.cookies.find((c) => c.name === 'refresh_token'), 'cookie mode sets the refresh cookie')

  const list = (await app.inject({ method: 'GET', url: '/api/auth/passkeys', headers: bearer(token) })).json()
  t.ok(list[0].lastUsedAt, 'the use is recorded')
})

t.test('sign-in refusals: made-up, reused and expired challenges, wrong origin, unknown credential, a registration challenge', async (t) => {
  const clock = fakeDate(t, Date.now(), { running: true })
  const app = await buildTestApp(t)
  const token = await signedIn(app)
  const authenticator = new SoftAuthenticator()
  t.equal((await registerPasskey(app, token, authenticator)).statusCode, 201)
  const refused = async (response: unknown, reason: string, message: string): Promise<void> => {
    const before = (await app.repos.audit.list({ type: 'login_failed' })).length
    const res = await passkeyLogin(app, response)
    t.equal(res.statusCode, 401, message)
    t.same(res.json(), { statusCode: 401, code: 'PASSKEY_INVALID', message: 'The passkey could not be verified' }, 'one answer for every refusal')
    const [event] = await events(app, 'login_failed', before + 1)
    t.equal(event!.detail?.reason, reason, `audited as ${reason}`)
  }

  await refused(authenticator.assert(await loginOptions(app), { challenge: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' }), 'challenge', 'a challenge the service never issued')

  const options = await loginOptions(app)
  const assertion = authenticator.assert(options)
  t.equal((await passkeyLogin(app, assertion)).statusCode, 200)
  await refused(assertion, 'challenge', 'the same assertion replayed: its challenge is spent')
  await refused(authenticator.assert(options), 'challenge', 'a fresh assertion on a spent challenge')

  const late = await loginOptions(app)
  clock.advance(5 * MINUTE + 1000)
  await refused(authenticator.assert(late), 'challenge', 'an expired challenge')

  await refused(authenticator.assert(await loginOptions(app), { origin: 'https://evil.example' }), 'invalid', 'an origin that is neither PUBLIC_URL nor CORS_ORIGINS')
  await refused(authenticator.assert(await loginOptions(app), { rpId: 'evil.example' }), 'invalid', 'another RP id')
  await refused(new SoftAuthenticator().assert(await loginOptions(app)), 'unknown_credential', 'a credential never registered')
  await refused(authenticator.assert(await registrationOptions(app, token)), 'challenge', 'a registration challenge does not sign in')

  const other = new SoftAuthenticator()
  other.userHandle = authenticator.userHandle
  const forged = { ...other.assert(await loginOptions(app)), id: authenticator.id, rawId: authenticator.id }
  await refused(forged, 'invalid', 'a signature by another key under a registered credential id')

  t.equal((await passkeyLogin(app, authenticator.assert(await loginOptions(app)))).statusCode, 200, 'the genuine authenticator still signs in')
})

t.test('a cloned authenticator (signature counter not advancing) is refused and audited', async (t) => {
  const app = await buildTestApp(t)
  const token = await signedIn(app)
  const authenticator = new SoftAuthenticator()
  t.equal((await registerPasskey(app, token, authenticator)).statusCode, 201)
  const copy = authenticator.clone()

  t.equal((await passkeyLogin(app, authenticator.assert(await loginOptions(app)))).statusCode, 200, 'the original signs in (counter 1)')
  t.equal((await passkeyLogin(app, authenticator.assert(await loginOptions(app)))).statusCode, 200, 'and again (counter 2)')
  const cloned = await passkeyLogin(app, copy.assert(await loginOptions(app)))
  t.equal(cloned.statusCode, 401, 'the copy, whose counter is 1 again, is refused')
  t.equal(cloned.json().code, 'PASSKEY_INVALID')
  const [clone] = await events(app, 'passkey_clone_detected')
  t.ok(clone!.userId, 'audited with the owner')
  t.equal((await events(app, 'login_failed'))[0]!.detail?.reason, 'cloned')

  const counterless = new SoftAuthenticator('http://localhost:3000', true)
  t.equal((await registerPasskey(app, token, counterless)).statusCode, 201)
  t.equal((await passkeyLogin(app, counterless.assert(await loginOptions(app)))).statusCode, 200, 'an authenticator without a counter (always 0) is accepted')
  t.equal((await passkeyLogin(app, counterless.assert(await loginOptions(app)))).statusCode, 200, 'every time')
})

t.test('list, rename and delete only the caller\'s own passkeys; a deleted passkey no longer signs in', async (t) => {
  const app = await buildTestApp(t)
  const alice = await signedIn(app, 'alice')
  const bob = await signedIn(app, 'bob')
  const authenticator = new SoftAuthenticator()
  const { id } = (await registerPasskey(app, alice, authenticator)).json()

  t.equal((await app.inject({ method: 'GET', url: '/api/auth/passkeys' })).statusCode, 401)
  t.same((await app.inject({ method: 'GET', url: '/api/auth/passkeys', headers: bearer(bob) })).json(), [], 'bob sees none of alice\'s')
  const renameByBob = await app.inject({ method: 'PATCH', url: `/api/auth/passkeys/${id}`, headers: bearer(bob), payload: { name: 'mine' } })
  t.equal(renameByBob.statusCode, 404)
  t.equal(renameByBob.json().code, 'PASSKEY_NOT_FOUND')
  t.equal((await app.inject({ method: 'DELETE', url: `/api/auth/passkeys/${id}`, headers: bearer(bob) })).statusCode, 404)
  t.equal((await app.inject({ method: 'DELETE', url: `/api/auth/passkeys/${id}` })).statusCode, 401, 'deleting needs the Bearer session')
  t.equal((await app.inject({ method: 'PATCH', url: `/api/auth/passkeys/${id}`, headers: bearer(alice), payload: { name: '' } })).statusCode, 400)

  const renamed = await app.inject({ method: 'PATCH', url: `/api/auth/passkeys/${id}`, headers: bearer(alice), payload: { name: 'Phone' } })
  t.equal(renamed.statusCode, 200)
  t.equal(renamed.json().name, 'Phone')

  t.equal((await app.inject({ method: 'DELETE', url: `/api/auth/passkeys/${id}`, headers: bearer(alice) })).statusCode, 204)
  t.same((await app.inject({ method: 'GET', url: '/api/auth/passkeys', headers: bearer(alice) })).json(), [])
  const gone = await passkeyLogin(app, authenticator.assert(await loginOptions(app)))
  t.equal(gone.statusCode, 401, 'a deleted passkey no longer signs in')
})

t.test('a disabled account cannot sign in with its passkey', async (t) => {
  const app = await buildTestApp(t)
  const token = await signedIn(app)
  const authenticator = new SoftAuthenticator()
  t.equal((await registerPasskey(app, token, authenticator)).statusCode, 201)
  const user = await app.repos.users.findByUsername('alice')
  await app.repos.users.setDisabled(user!.id, true, new Date())
  const res = await passkeyLogin(app, authenticator.assert(await loginOptions(app)))
  t.equal(res.statusCode, 401)
})

t.test('with REQUIRE_EMAIL_VERIFICATION, a passkey signs in only an account whose address is verified', async (t) => {
  const app = await buildTestApp(t, { REQUIRE_EMAIL_VERIFICATION: 'true', MAIL_TRANSPORT: 'log' })
  const verified = async (yes: boolean) => {
    const sql = `UPDATE users SET email_verified_at = ${yes ? (app.database.kind === 'sqlite' ? String(Date.now()) : 'now()') : 'NULL'}`
    if (app.database.kind === 'sqlite') app.sqlite.prepare(sql).run()
    else await queryPostgres(app.config.databaseUrl, sql)
  }
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/register', payload: { username: 'alice', password: PASSWORD, email: 'alice@example.com' } })).statusCode, 201)
  await verified(true)
  const token = (await login(app, { transport: 'body' })).accessToken
  const authenticator = new SoftAuthenticator()
  t.equal((await registerPasskey(app, token, authenticator)).statusCode, 201)
  t.equal((await passkeyLogin(app, authenticator.assert(await loginOptions(app)))).statusCode, 200, 'verified: signs in')

  await verified(false)
  const refused = await passkeyLogin(app, authenticator.assert(await loginOptions(app)))
  t.equal(refused.statusCode, 403)
  t.equal(refused.json().code, 'EMAIL_NOT_VERIFIED')
})

t.test('the second-factor check for a known user (what mfa/verify and reauthenticate call)', async (t) => {
  const app = await buildTestApp(t)
  const alice = await signedIn(app, 'alice')
  await signedIn(app, 'bob')
  const authenticator = new SoftAuthenticator()
  t.equal((await registerPasskey(app, alice, authenticator)).statusCode, 201)
  const aliceId = (await app.repos.users.findByUsername('alice'))!.id
  const bobId = (await app.repos.users.findByUsername('bob'))!.id

  t.equal(await app.passkeys.factorOptions(bobId, new Date()), null, 'a user without passkeys gets no options')
  const options = (await app.passkeys.factorOptions(aliceId, new Date()))!
  t.same(options.allowCredentials!.map((c) => c.id), [authenticator.id], 'allowCredentials lists the user\'s passkeys')

  const ok = await app.passkeys.verifyFactor(aliceId, authenticator.assert(options) as never, new Date())
  t.match(ok, { ok: true, userId: aliceId, credentialId: authenticator.id })
  t.match(await app.passkeys.verifyFactor(aliceId, authenticator.assert(options) as never, new Date()), { ok: false, reason: 'challenge' }, 'single use')

  const forBob = (await app.passkeys.factorOptions(aliceId, new Date()))!
  t.match(await app.passkeys.verifyFactor(bobId, authenticator.assert(forBob) as never, new Date()), { ok: false, reason: 'challenge' }, 'a challenge of alice does not serve bob')
  t.match(await app.passkeys.verifyFactor(aliceId, authenticator.assert(await loginOptions(app)) as never, new Date()), { ok: false, reason: 'challenge' }, 'a sign-in challenge is not a factor challenge')
})

t.test('a passkey as the second factor of a password login, and for a step-up', async (t) => {
  const app = await buildTestApp(t)
  const token = await signedIn(app)
  const authenticator = new SoftAuthenticator()
  t.equal((await registerPasskey(app, token, authenticator)).statusCode, 201)
  const copy = authenticator.clone()

  // The password alone no longer signs in: the passkey is asked for, with options listing it.
  const first = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'alice', password: PASSWORD, transport: 'body' } })
  t.equal(first.statusCode, 202, 'a second factor is due')
  const { mfaToken, methods, webauthnOptions } = first.json()
  t.ok(methods.includes('webauthn'), 'the passkey is one of the methods')
  t.same(webauthnOptions.allowCredentials.map((c: { id: string }) => c.id), [authenticator.id], 'options list the account\'s passkey')

  const verify = async (webauthn: unknown) => await app.inject({ method: 'POST', url: '/api/auth/mfa/verify', payload: { mfaToken, webauthn } })
  const wrongChallenge = await verify(authenticator.assert(await loginOptions(app)))
  t.equal(wrongChallenge.statusCode, 403, 'an assertion of another challenge is a wrong factor')
  t.equal(wrongChallenge.json().code, 'MFA_CODE_INVALID')
  const done = await verify(authenticator.assert(webauthnOptions))
  t.equal(done.statusCode, 200, 'the passkey completes the login')
  t.same(claimsOf(done.json().accessToken).amr, ['pwd', 'webauthn'], 'amr says password and passkey')

  // A clone (counter not advancing) is refused as a factor too, and audited.
  const second = (await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'alice', password: PASSWORD, transport: 'body' } })).json()
  const cloned = await app.inject({ method: 'POST', url: '/api/auth/mfa/verify', payload: { mfaToken: second.mfaToken, webauthn: copy.assert(second.webauthnOptions) } })
  t.equal(cloned.statusCode, 403, 'a cloned authenticator is refused as a second factor')
  t.ok((await events(app, 'passkey_clone_detected')).length >= 1, 'and audited')

  // Step-up: options for the caller, then reauthenticate with the assertion.
  const options = await app.inject({ method: 'POST', url: '/api/auth/passkeys/factor/options', headers: bearer(done.json().accessToken) })
  t.equal(options.statusCode, 200)
  const stepUp = await app.inject({ method: 'POST', url: '/api/auth/reauthenticate', headers: bearer(done.json().accessToken), payload: { webauthn: authenticator.assert(options.json()) } })
  t.equal(stepUp.statusCode, 200, 'a passkey reauthenticates')
  t.ok(claimsOf(stepUp.json().accessToken).auth_time >= claimsOf(done.json().accessToken).auth_time, 'with a fresh auth_time')
})
