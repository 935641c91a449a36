/**
 * The demo's forgot-password flow in a real browser (Debian's Chromium) against real listening
 * servers (the demo on one origin, the API on another) whose mail goes through a real SMTP
 * server on loopback: register with an address, log out, "Forgot password?", the link taken
 * from the received message and fetched with GET and HEAD first (as a mail scanner would),
 * then opened in the page, a new password set there, and a sign-in in the demo with it; the old
 * password fails. Runs on SQLite and, with TEST_DATABASE=postgres, on PostgreSQL. Skipped with a
 * message when Chromium is missing, unless CI is set.
 */
import t from 'tap'
import type { Browser, Page } from 'playwright-core'
import { PASSWORD, TEST_DATABASE } from '../support/app.js'
import { browserUnavailable, launchBrowser, startServers, type Servers } from '../support/browser.js'
import { freshPostgresDatabase } from '../support/pg.js'
import { startSmtpSink } from '../support/smtp.js'

const NEW_PASSWORD = 'a brand new passphrase for rita'

const unavailable = browserUnavailable()
if (unavailable !== null) {
  t.comment(unavailable)
  t.plan(0, unavailable)
} else {
  await run()
}

async function run (): Promise<void> {
  const smtp = await startSmtpSink(t)
  const database = TEST_DATABASE === 'postgres' ? await freshPostgresDatabase(null) : null
  let servers: Servers | undefined
  let browser: Browser | undefined
  t.teardown(async () => {
    await browser?.close()
    await servers?.close()
    await database?.drop()
  })
  servers = await startServers({
    MAIL_TRANSPORT: 'smtp',
    SMTP_URL: smtp.url,
    MAIL_FROM: 'Example <no-reply@example.test>',
    ...(database === null ? {} : { DATABASE_URL: database.url })
  })
  browser = await launchBrowser()
  const api = servers.apiOrigin
  const demoUrl = `${servers.spaOrigin}/demo/`

  async function signIn (page: Page, name: string, password: string): Promise<void> {
    await page.locator('#login-view').waitFor()
    await page.fill('#username', name)
    await page.fill('#password', password)
    await page.click('#login-button')
  }

  await t.test('register with an address, forget the password, reset it from the mailed link, sign in with the new one', async (t) => {
    const context = await browser!.newContext({ viewport: { width: 1100, height: 900 } })
    t.teardown(() => context.close())
    const page = await context.newPage()
    await page.goto(demoUrl)

    await page.locator('#login-view').waitFor()
    await page.fill('#username', 'rita')
    await page.fill('#password', PASSWORD)
    await page.fill('#email', 'rita@example.test')
    await page.click('#register-button')
    await page.locator('#me-username', { hasText: 'rita' }).waitFor()
    t.equal(await page.textContent('#me-email'), 'rita@example.test', 'the address is shown')
    t.equal(await page.textContent('#me-email-status'), 'unverified')
    t.equal(await page.isVisible('#email-verify-send'), true, 'with a button to send a verification mail')
    await smtp.waitFor(1) // the verification mail of the registration

    await page.click('#logout-button')
    await page.locator('#login-view').waitFor()

    // An address without an account gets the same answer, and no mail.
    await page.click('#forgot-button')
    await page.locator('#forgot-view').waitFor()
    await page.fill('#forgot-email', 'nobody@example.test')
    await page.click('#forgot-send')
    const unknown = await page.locator('#forgot-result', { hasText: 'on its way' }).textContent()

    await page.fill('#forgot-email', 'rita@example.test')
    await page.click('#forgot-send')
    const [, mail] = await smtp.waitFor(2)
    t.equal(await page.textContent('#forgot-result'), unknown, 'the same words for an address with an account and one without')
    t.same(mail!.to, ['rita@example.test'])
    const m = new RegExp(`${api.replace(/[.]/g, '\\.')}/account/reset-password\\?token=([A-Za-z0-9_-]{43})`).exec(mail!.text)
    t.ok(m, 'a reset link to the service\'s page')
    const link = m![0]
    const token = m![1]!

    // What a mail scanner does before the person opens the message: spends nothing.
    for (const method of ['GET', 'HEAD']) {
      const res = await fetch(link, { method })
      t.equal(res.status, 200, `${method} of the link answers the page`)
      await res.arrayBuffer()
    }

    await page.goto(link)
    await page.locator('input[name="newPassword"]').waitFor()
    t.notOk(page.url().includes(token), 'the page takes the token off the address bar')
    await page.fill('input[name="newPassword"]', NEW_PASSWORD)
    await page.fill('input[name="repeat"]', NEW_PASSWORD)
    await page.click('#form button')
    await page.locator('#outcome', { hasText: 'Your password is changed' }).waitFor()
    t.pass('the page set the new password: the scanner\'s GET and HEAD had not spent the link')
    t.same(servers!.statuses('POST', '/api/auth/password/reset'), [204], 'one reset, by the page\'s button')

    await page.goto(demoUrl)
    await signIn(page, 'rita@example.test', PASSWORD)
    await page.locator('#login-error', { hasText: 'INVALID_CREDENTIALS' }).waitFor()
    t.pass('the old password fails')
    await signIn(page, 'rita@example.test', NEW_PASSWORD)
    await page.locator('#me-username', { hasText: 'rita' }).waitFor()
    t.pass('signed in by address with the new password')

    t.notOk(JSON.stringify(servers!.log).includes(token), 'the token is never logged')
  })
}
