/**
 * The demo's TOTP flows in a real browser (Debian's Chromium) against real listening servers:
 * set up an authenticator app from the QR code, keep the recovery codes, sign in with a
 * recovery code and with an app code. Codes are computed here with the otpauth library, as the
 * app would. Skipped with a message when Chromium is missing, unless CI is set.
 */
import * as OTPAuth from 'otpauth'
import t from 'tap'
import type { Browser, Page } from 'playwright-core'
import { PASSWORD } from '../support/app.js'
import { inChromium, startServers } from '../support/browser.js'

const codeAt = (secret: string, ms: number): string => new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret) }).generate({ timestamp: ms })

await inChromium(t, run)

async function run (browser: Browser): Promise<void> {
  const servers = await startServers({})
  t.teardown(async () => { await servers.close() })
  const demoUrl = `${servers.spaOrigin}/demo/`

  async function signInWithPassword (page: Page): Promise<void> {
    await page.locator('#login-view').waitFor()
    await page.fill('#username', 'mfauser')
    await page.fill('#password', PASSWORD)
    await page.click('#login-button')
  }

  await t.test('enrol TOTP from the QR code, then sign in with a recovery code and with a code', async (t) => {
    const res = await servers.api.inject({ method: 'POST', url: '/api/auth/register', payload: { username: 'mfauser', password: PASSWORD } })
    t.equal(res.statusCode, 201)
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } })
    t.teardown(() => context.close())
    const page = await context.newPage()
    await page.goto(demoUrl)
    await signInWithPassword(page)
    await page.locator('#app-view').waitFor()

    await page.click('#totp-enroll')
    await page.locator('#totp-setup').waitFor()
    const src = await page.getAttribute('#totp-qr', 'src')
    t.match(src, /^data:image\/png;base64,/, 'the QR code is shown (the page\'s CSP allows data: images)')
    t.ok(await page.evaluate(() => ((globalThis as any).document.getElementById('totp-qr') as { naturalWidth: number }).naturalWidth > 0), 'and rendered')
    const secret = (await page.textContent('#totp-secret'))!
    await page.fill('#totp-code', codeAt(secret, Date.now()))
    await page.click('#totp-confirm')
    await page.locator('#recovery').waitFor()
    const codes = await page.locator('#recovery-codes li').allTextContents()
    t.equal(codes.length, 10)
    await page.click('#recovery-done')

    await page.click('#logout-button')
    await signInWithPassword(page)
    await page.locator('#mfa-view').waitFor()
    t.equal(await page.isVisible('#app-view'), false, 'the password alone does not sign in')
    await page.click('#mfa-use-recovery')
    await page.fill('#mfa-recovery', codes[0]!)
    await page.click('#mfa-button')
    await page.locator('#me-username', { hasText: 'mfauser' }).waitFor()
    t.pass('signed in with a recovery code')

    await page.click('#logout-button')
    await signInWithPassword(page)
    await page.locator('#mfa-view').waitFor()
    // The same recovery code again is refused, with the service's message.
    await page.click('#mfa-use-recovery')
    await page.fill('#mfa-recovery', codes[0]!)
    await page.click('#mfa-button')
    await page.locator('#mfa-error', { hasText: 'MFA_CODE_INVALID' }).waitFor()
    // The code that confirmed the enrolment is spent; the app's next code (one step of drift) is not.
    await page.click('#mfa-use-recovery')
    await page.fill('#mfa-code', codeAt(secret, Date.now() + 30_000))
    await page.click('#mfa-button')
    await page.locator('#me-username', { hasText: 'mfauser' }).waitFor()
    t.pass('signed in with a code')
  })
}
