/**
 * Passkeys in a real browser (Debian's Chromium through playwright-core) with a CDP virtual
 * authenticator (CTAP2, resident keys, user verification): the demo app registers a passkey,
 * renames it, logs out, signs in with it without typing a username (while the passkey autofill
 * request is pending: the button's request must take its place, not race it), and a copy of
 * the credential whose signature counter does not advance (a cloned authenticator) is refused.
 *
 * WebAuthn refuses IP addresses as relying-party ids, so the service and its demo are one
 * instance at http://localhost:<port> (PUBLIC_URL), the RP id `localhost`. Skipped with a
 * message when Chromium is missing, unless CI is set.
 */
import t from 'tap'
import type { Browser, CDPSession, Page } from 'playwright-core'
import { PASSWORD } from '../support/app.js'
import { inChromium } from '../support/browser.js'
import { freePort, listen } from '../support/server.js'

const AUTHENTICATOR = { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true } as const

await inChromium(t, run)

async function run (browser: Browser): Promise<void> {
  const port = await freePort()
  const origin = `http://localhost:${port}`
  const { app } = await listen(t, { PUBLIC_URL: origin, DEMO_ENABLED: 'true' }, { port })
  for (const name of ['auth-client', 'demo']) await app.inject({ url: `/demo/${name}.js` })
  const username = 'passkey-user'
  const registered = await app.inject({ method: 'POST', url: '/api/auth/register', payload: { username, password: PASSWORD } })
  if (registered.statusCode !== 201) throw new Error(`register: ${registered.statusCode}`)

  const context = await browser.newContext()
  t.teardown(() => context.close())
  const page = await context.newPage()
  // Every navigator.credentials.get() the page makes: its mediation, how it ended, and how many
  // others were still pending when it started.
  await context.addInitScript(() => {
    const g = globalThis as any
    g.__gets = []
    let pending = 0
    const original = g.navigator.credentials.get.bind(g.navigator.credentials)
    g.navigator.credentials.get = (options: any) => {
      const entry = { mediation: options?.mediation ?? 'optional', outcome: 'pending', pendingAtStart: pending }
      g.__gets.push(entry)
      pending++
      const request = original(options)
      request.then(() => { entry.outcome = 'ok' }, (err: Error) => { entry.outcome = err.name }).finally(() => { pending-- })
      return request
    }
  })
  const cdp: CDPSession = await context.newCDPSession(page)
  await cdp.send('WebAuthn.enable')
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', { options: AUTHENTICATOR })

  async function logOut (p: Page): Promise<void> {
    await p.click('#logout-button')
    await p.locator('#login-view').waitFor()
  }

  await t.test('the demo registers a passkey, lists and renames it', async (t) => {
    await page.goto(`${origin}/demo/`)
    await page.locator('#login-view').waitFor()
    t.equal(await page.getAttribute('#username', 'autocomplete'), 'username webauthn', 'the username field offers passkeys in its autofill')
    await page.fill('#username', username)
    await page.fill('#password', PASSWORD)
    await page.click('#login-button')
    await page.locator('#me-username', { hasText: username }).waitFor()

    await page.fill('#passkey-name', 'Virtual key')
    await page.click('#passkey-add')
    await page.locator('#passkeys tr .passkey-name', { hasText: 'Virtual key' }).waitFor()
    t.equal(await page.textContent('#passkey-result'), 'Passkey added')
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId })
    t.equal(credentials.length, 1, 'the authenticator holds one credential')
    t.equal(credentials[0]!.isResidentCredential, true, 'a discoverable (resident) credential')
    t.equal(credentials[0]!.rpId, 'localhost')

    await page.fill('#passkey-name', 'Renamed key')
    await page.click('#passkeys tr .rename')
    await page.locator('#passkeys tr .passkey-name', { hasText: 'Renamed key' }).waitFor()
    t.pass('renamed')
  })

  await t.test('passkey autofill: on the sign-in page, the saved passkey signs in with no username typed and no click', async (t) => {
    // Logged out without presence (the autofill request the form starts stays pending), then
    // the page left: no request is pending when the sign-in page opens again.
    await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: false })
    await logOut(page)
    await page.goto('about:blank')
    await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: true })
    // The virtual authenticator answers the conditional (autofill) request at once, as a user
    // picking the one saved passkey from the username field's suggestions would.
    await page.goto(`${origin}/demo/`)
    await page.locator('#me-username', { hasText: username }).waitFor()
    t.equal(await page.evaluate(() => (globalThis as any).__gets.map((g: { mediation: string }) => g.mediation).join()), 'conditional', 'one request: the autofill\'s')
    const logins = await app.repos.audit.list({ type: 'login_succeeded' })
    t.ok(logins.some((e) => e.detail?.method === 'webauthn'), 'audited as a passkey login')
  })

  await t.test('the "Sign in with a passkey" button signs in without a username, its request never alongside another', async (t) => {
    // With no passkey to offer, the autofill request the page starts ends without a sign-in;
    // the passkey comes back before the button is pressed. (The virtual authenticator cannot
    // keep a conditional request pending: it answers at once, or refuses without a passkey,
    // and a request started without user presence never resumes.)
    const [saved] = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials
    await cdp.send('WebAuthn.clearCredentials', { authenticatorId })
    await logOut(page)
    await page.goto(`${origin}/demo/`)
    await page.locator('#login-view').waitFor()
    await page.waitForFunction(() => (globalThis as any).__gets.length === 1)
    t.equal(await page.inputValue('#username'), '', 'no username typed')
    await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: saved! })
    const before = saved!.signCount
    await page.click('#passkey-login-button')
    await Promise.race([page.locator('#me-username', { hasText: username }).waitFor(), page.locator('#login-error').waitFor()])
    t.equal(await page.isVisible('#login-error') ? await page.textContent('#login-error') : null, null, 'no error')
    await page.locator('#me-username', { hasText: username }).waitFor()
    t.pass('signed in as the passkey\'s owner')
    const gets = await page.evaluate(() => (globalThis as any).__gets)
    t.same(gets.map((g: { mediation: string }) => g.mediation), ['conditional', 'optional'], 'the autofill\'s request, then the button\'s')
    t.match(gets[0].outcome, /^(AbortError|NotAllowedError)$/, 'the autofill request did not sign in')
    t.equal(gets[1].outcome, 'ok', 'the button\'s answered')
    t.equal(gets[1].pendingAtStart, 0, 'when the button\'s request started, no other was pending')
    const after = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials[0]!.signCount
    t.ok(after > before, `the authenticator signed (counter ${before} -> ${after})`)
  })

  await t.test('a password login asks for the passkey as its second factor, and the passkey completes it', async (t) => {
    // As above: the page's autofill request ends without the passkey, which comes back after.
    const [saved] = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials
    await cdp.send('WebAuthn.clearCredentials', { authenticatorId })
    await logOut(page)
    await page.goto(`${origin}/demo/`)
    await page.locator('#login-view').waitFor()
    await page.waitForFunction(() => (globalThis as any).__gets.length === 1)
    await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: saved! })
    await page.fill('#username', username)
    await page.fill('#password', PASSWORD)
    await page.click('#login-button')
    await page.locator('#mfa-view').waitFor()
    t.ok(await page.isVisible('#mfa-use-passkey'), 'the second step offers the passkey')
    await page.click('#mfa-use-passkey')
    await page.locator('#me-username', { hasText: username }).waitFor()
    t.pass('signed in with the password and the passkey')
    const logins = await app.repos.audit.list({ type: 'login_succeeded' })
    t.ok(logins.some((e) => JSON.stringify(e.detail?.amr) === '["pwd","webauthn"]'), 'the login is audited with both factors')
  })

  await t.test('a cloned authenticator whose counter does not advance is refused', async (t) => {
    await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: false })
    await logOut(page)
    await page.goto('about:blank')
    const [credential] = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials
    t.ok(credential!.signCount >= 1, `the original has signed ${credential!.signCount} time(s)`)
    // The clone: the same key and credential on another authenticator, its counter back at 0, so
    // its next signature counts 1, which the service has seen already.
    await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId })
    const { authenticatorId: cloneId } = await cdp.send('WebAuthn.addVirtualAuthenticator', { options: AUTHENTICATOR })
    await page.goto(`${origin}/demo/`)
    await page.locator('#login-view').waitFor()
    await page.waitForFunction(() => (globalThis as any).__gets.length === 1)
    await cdp.send('WebAuthn.addCredential', { authenticatorId: cloneId, credential: { ...credential!, signCount: 0 } })

    await page.click('#passkey-login-button')
    await page.locator('#login-error').waitFor()
    t.equal(await page.textContent('#login-error'), 'The passkey could not be verified (PASSKEY_INVALID)')
    t.equal(await page.isVisible('#app-view'), false, 'not signed in')
    const clones = await app.repos.audit.list({ type: 'passkey_clone_detected' })
    t.ok(clones.length >= 1, 'the clone is audited')
    const failures = await app.repos.audit.list({ type: 'login_failed' })
    t.equal(failures.at(-1)?.detail?.reason, 'cloned')
  })
}
