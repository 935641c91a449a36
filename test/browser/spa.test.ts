/**
 * The demo SPA and its client library in a real browser (Debian's Chromium), against real
 * listening servers: the app on one origin, the API on another (CORS with credentials), both
 * on 127.0.0.1, plus a hostile page on a third, unlisted origin.
 *
 * Access tokens live 2 s here (ACCESS_TOKEN_TTL=2, no clock tolerance), so expiry is a real,
 * short wait. Skipped with a message when Chromium is missing, unless CI is set.
 */
import { mkdirSync, statSync } from 'node:fs'
import t from 'tap'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { PASSWORD } from '../support/app.js'
import { inChromium, startServers } from '../support/browser.js'
import { freePort, listen } from '../support/server.js'

const TTL_MS = 2000
const ARTIFACTS = new URL('./artifacts/', import.meta.url)
const REFRESH = '/api/auth/refresh'

await inChromium(t, run)

async function run (b: Browser): Promise<void> {
  const servers = await startServers({ ACCESS_TOKEN_TTL: String(TTL_MS / 1000), JWT_CLOCK_TOLERANCE: '0' })
  t.teardown(async () => { await servers.close() })
  const demoUrl = `${servers.spaOrigin}/demo/`
  let users = 0

  /** A fresh browser profile (its own cookie jar) with an account on the API. */
  async function newUser (): Promise<{ context: BrowserContext, username: string }> {
    const username = `user${++users}`
    const res = await servers.api.inject({ method: 'POST', url: '/api/auth/register', payload: { username, password: PASSWORD } })
    if (res.statusCode !== 201) throw new Error(`register: ${res.statusCode}`)
    const context = await b.newContext({ viewport: { width: 1100, height: 860 } })
    t.teardown(() => context.close())
    return { context, username }
  }

  async function openApp (context: BrowserContext): Promise<Page> {
    const page = await context.newPage()
    await page.goto(demoUrl)
    return page
  }

  async function signIn (page: Page, username: string): Promise<void> {
    await page.locator('#login-view').waitFor()
    await page.fill('#username', username)
    await page.fill('#password', PASSWORD)
    await page.click('#login-button')
    await page.locator('#app-view').waitFor()
    await page.locator('#me-username', { hasText: username }).waitFor()
  }

  async function callApi (page: Page): Promise<string> {
    const before = await page.textContent('#call-result')
    await page.click('#call-button')
    await page.waitForFunction((prev) => {
      const text = (globalThis as any).document.getElementById('call-result').textContent
      return text !== '' && text !== prev
    }, before)
    return (await page.textContent('#call-result')) ?? ''
  }

  const refreshCookie = async (context: BrowserContext) =>
    (await context.cookies(servers.apiOrigin + REFRESH)).find((c) => c.name === 'refresh_token')

  await t.test('1. login: the refresh cookie is set, no script can see it, /me works', async (t) => {
    const { context, username } = await newUser()
    const page = await openApp(context)
    await signIn(page, username)
    t.equal(await page.textContent('#me-username'), username, '/me is shown')

    const cookie = await refreshCookie(context)
    t.ok(cookie, 'the browser stored the refresh cookie, although the API is on another origin over plain http (127.0.0.1 is a secure context)')
    t.match(cookie, { httpOnly: true, secure: true, sameSite: 'Strict', path: '/api/auth' })
    t.equal(await page.evaluate('document.cookie'), '', 'the app page sees no cookie')
    // On the API's own origin, under the cookie's path, only HttpOnly hides it.
    const apiPage = await context.newPage()
    await apiPage.goto(`${servers.apiOrigin}/api/auth/me`)
    t.notMatch(await apiPage.evaluate('document.cookie'), /refresh_token/, 'HttpOnly: not even a page under /api/auth on the API origin sees it')
    await apiPage.close()
    const storage = await page.evaluate('JSON.stringify([localStorage, sessionStorage])') as string
    t.notMatch(storage, /eyJ/, 'no JWT in web storage')
    t.match(JSON.parse(storage), [{ [`auth-client:${servers.apiOrigin}:session`]: '1' }, {}], 'only the signed-in flag')
    t.equal(Object.keys(JSON.parse(storage)[0] as object).length, 1)
  })

  await t.test('0. a first visit asks nothing of the service and logs no error in the console', async (t) => {
    const context = await b.newContext()
    t.teardown(() => context.close())
    const page = await context.newPage()
    const errors: string[] = []
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') errors.push(`${m.type()}: ${m.text()}`) })
    page.on('pageerror', (e) => { errors.push(`pageerror: ${e.message}`) })
    const mark = servers.log.length
    await page.goto(demoUrl)
    await page.locator('#login-view').waitFor()
    // The demo has settled: the page has been idle on the network (a refresh would have been sent at load).
    await page.waitForLoadState('networkidle')
    t.same(servers.statuses('POST', REFRESH, mark), [], 'no refresh without a sign-in in this browser')
    t.same(errors, [], 'no error in the console')
  })

  await t.test('2. the access token expires: the next call refreshes silently', async (t) => {
    const { context, username } = await newUser()
    const page = await openApp(context)
    await signIn(page, username)
    const mark = servers.log.length
    await page.waitForTimeout(TTL_MS + 300)
    const result = await callApi(page)
    t.match(result, /^200 OK .*token refreshed first/, result)
    t.same(servers.statuses('POST', REFRESH, mark), [200], 'one refresh, before the call')
    t.same(servers.statuses('GET', '/api/auth/me', mark), [200], 'the call never saw a 401')
    t.ok(await page.isHidden('#login-view'), 'never sent back to the login form')

    // A client that does not refresh ahead sends the expired token, gets 401, refreshes once
    // and retries once.
    const late = await page.evaluate(`(async () => {
      const { createAuthClient } = await import('./auth-client.js')
      const auth = createAuthClient({ baseUrl: ${JSON.stringify(servers.apiOrigin)}, refreshLeewaySeconds: -3600 })
      await auth.restore()
      const first = auth.accessToken
      await new Promise((resolve) => setTimeout(resolve, ${TTL_MS + 300}))
      const res = await auth.fetch('/api/auth/me')
      return { status: res.status, refreshed: auth.accessToken !== first }
    })()`)
    t.same(late, { status: 200, refreshed: true }, 'the 401 was answered by a refresh and a retry')
    const me = servers.log.slice(mark).filter((l) => l.msg === 'request' && l.route === '/api/auth/me').map((l) => l.statusCode)
    t.same(me.slice(-2), [401, 200], 'the API saw the expired token refused, then the retry')
  })

  await t.test('3. a page reload keeps the session (refresh on load)', async (t) => {
    const { context, username } = await newUser()
    const page = await openApp(context)
    await signIn(page, username)
    const mark = servers.log.length
    await page.reload()
    await page.locator('#me-username', { hasText: username }).waitFor()
    t.ok(await page.isHidden('#login-view'))
    t.match(await page.textContent('#log'), /Session restored from the refresh cookie/)
    t.same(servers.statuses('POST', REFRESH, mark), [200], 'one refresh restored it')
    const second = await openApp(context)
    await second.locator('#me-username', { hasText: username }).waitFor()
    t.pass('a new tab of the same browser is signed in too')
    t.equal(servers.liveSessions(username), 1)
  })

  await t.test('4. five tabs, tokens expired, all calling at the same moment: all keep working, one session', async (t) => {
    const { context, username } = await newUser()
    // Each tab notes when its refresh requests start and end, to show that tabs take turns.
    await context.addInitScript(`{
      const fetch = window.fetch
      window.refreshes = []
      window.fetch = async (input, init) => {
        if (!String(input).endsWith('/api/auth/refresh')) return await fetch(input, init)
        const entry = { start: Date.now(), end: Infinity }
        window.refreshes.push(entry)
        try { return await fetch(input, init) } finally { entry.end = Date.now() }
      }
    }`)
    const first = await openApp(context)
    await signIn(first, username)
    const tabs = [first]
    for (let i = 1; i < 5; i++) tabs.push(await openApp(context))
    await Promise.all(tabs.map((tab) => tab.locator('#me-username', { hasText: username }).waitFor()))
    await first.waitForTimeout(TTL_MS + 300)

    const mark = servers.log.length
    const at = Date.now() + 400 // one instant on the shared clock, for every tab
    await Promise.all(tabs.map(async (tab) => await tab.evaluate(
      `setTimeout(() => { window.clickedAt = Date.now(); document.getElementById('call-button').click() }, ${at} - Date.now())`)))
    await Promise.all(tabs.map((tab) => tab.locator('#call-result', { hasText: '200 OK' }).waitFor()))
    for (const [i, tab] of tabs.entries()) {
      t.match(await tab.textContent('#call-result'), /^200 OK/, `tab ${i + 1} got its answer`)
      t.ok(await tab.isHidden('#login-view'), `tab ${i + 1} is still signed in`)
    }
    const clickedAt = await Promise.all(tabs.map(async (tab) => await tab.evaluate('window.clickedAt') as number))
    const spread = Math.max(...clickedAt) - Math.min(...clickedAt)
    t.ok(spread < 1000, `the five calls started within ${spread} ms of each other`)
    const refreshes = servers.statuses('POST', REFRESH, mark)
    t.ok(refreshes.length >= 1, 'the expired tokens were refreshed')
    t.ok(refreshes.every((s) => s === 200), 'no refresh was refused')
    t.comment(`${refreshes.length} refresh(es) served five tabs`)
    type Span = { start: number, end: number }
    const spans = (await Promise.all(tabs.map(async (tab) => await tab.evaluate('window.refreshes') as Span[])))
      .flat().filter((s) => s.start >= at - 50).sort((x, y) => x.start - y.start)
    t.equal(spans.length, refreshes.length, 'every refresh the API saw came from one of the tabs')
    t.ok(spans.every((s, i) => i === 0 || s.start >= spans[i - 1]!.end), `the tabs refreshed one at a time: ${JSON.stringify(spans.map((s) => [s.start - at, s.end - at]))}`)
    t.same(servers.statuses('GET', '/api/auth/me', mark).filter((s) => s !== 200), [], 'no call was refused')

    t.equal(servers.liveSessions(username), 1, 'the database holds exactly one live session')
    await first.click('#sessions-reload')
    await first.waitForFunction(() => (globalThis as any).document.querySelectorAll('#sessions tr').length === 1)
    t.equal(await first.locator('#sessions tr').count(), 1, 'GET /api/auth/sessions lists exactly one')
    // And everyone still works afterwards.
    for (const result of await Promise.all(tabs.map(callApi))) t.match(result, /^200 OK/, 'and keeps working')
  })

  await t.test('5. logout in one tab: the other tabs\' refresh fails and they show the login form', async (t) => {
    const { context, username } = await newUser()
    const first = await openApp(context)
    await signIn(first, username)
    const others = [await openApp(context), await openApp(context)]
    await Promise.all(others.map((tab) => tab.locator('#me-username', { hasText: username }).waitFor()))

    const mark = servers.log.length
    await first.click('#logout-button')
    await first.locator('#login-view').waitFor()
    for (const [i, tab] of others.entries()) {
      await tab.locator('#login-view').waitFor()
      t.match(await tab.textContent('#notice'), /session has ended/, `tab ${i + 2} shows the login form and says why`)
      t.ok(await tab.isHidden('#app-view'))
    }
    t.same(servers.statuses('POST', '/api/auth/logout', mark), [204])
    const refreshes = servers.statuses('POST', REFRESH, mark)
    t.same(refreshes, others.map(() => 401), 'each other tab tried the cookie once and was refused')
    t.equal(servers.liveSessions(username), 0)
    t.equal(await refreshCookie(context), undefined, 'the cookie is gone')
  })

  await t.test('6. a page on an unlisted origin cannot refresh, by fetch or by form, and the session stays valid', async (t) => {
    const { context, username } = await newUser()
    const app = await openApp(context)
    await signIn(app, username)
    const cookieBefore = (await refreshCookie(context))?.value
    const spent = () => (servers.api.sqlite.prepare('SELECT count(*) AS n FROM refresh_tokens WHERE spent_at IS NOT NULL').get() as { n: number }).n
    const spentBefore = spent()

    for (const [kind, origin] of Object.entries(servers.hostileOrigins)) {
      const hostile = await context.newPage()
      await hostile.goto(`${origin}/`)
      const mark = servers.log.length
      const outcome = await hostile.evaluate(`fetch(${JSON.stringify(servers.apiOrigin + REFRESH)}, { method: 'POST', credentials: 'include' })
        .then((res) => 'read ' + res.status, (err) => 'blocked: ' + err.name)`)
      t.equal(outcome, 'blocked: TypeError', `${kind}: the page cannot read the answer`)
      t.same(servers.statuses('POST', REFRESH, mark), [403], `${kind}: the API refused the fetch (CROSS_SITE_REQUEST)`)
      t.match(servers.log.slice(mark).find((l) => l.msg === 'cross-site request refused'), { reason: 'origin not allowed' })

      const formMark = servers.log.length
      const answer = await Promise.all([
        hostile.waitForResponse((res) => res.url().endsWith(REFRESH)),
        hostile.goto(`${origin}/form`)
      ])
      const status = answer[0].status()
      t.ok(status === 403 || status === 415, `${kind}: the cross-site form POST is refused (${status})`)
      t.same(servers.statuses('POST', REFRESH, formMark), [status])
      await hostile.close()
    }
    // Another port of the same host is the same site: the browser sent the cookie there, so
    // the refusal above was the API's, not SameSite's.
    t.equal((await refreshCookie(context))?.value, cookieBefore, 'the refresh cookie was not rotated or cleared')
    t.equal(spent(), spentBefore, 'no refresh token was spent')
    t.equal(servers.liveSessions(username), 1)
    t.match(await callApi(app), /^200 OK/, 'the app still works')
  })

  await t.test('8. the demo opened at another address than PUBLIC_URL says which origin to use', async (t) => {
    // The service serves its own demo; the user types 127.0.0.1 where PUBLIC_URL says localhost.
    const port = await freePort()
    await listen(t, { PUBLIC_URL: `http://localhost:${port}`, DEMO_ENABLED: 'true' }, { port })
    const context = await b.newContext()
    t.teardown(() => context.close())
    const page = await context.newPage()
    await page.goto(`http://127.0.0.1:${port}/demo/`)
    await page.locator('#login-view').waitFor()
    await page.fill('#username', 'wrong-address')
    await page.fill('#password', PASSWORD)
    await page.click('#register-button')
    await page.locator('#login-error').waitFor()
    t.match(await page.textContent('#login-error'),
      `Cross-site request refused: the request came from origin "http://127.0.0.1:${port}", which is not allowed; cookie mode accepts http://localhost:${port}; open the app there, or add its origin to CORS_ORIGINS (or set PUBLIC_URL to the address users open) (CROSS_SITE_REQUEST)`)
  })

  await t.test('7. a screenshot of the demo after login', async (t) => {
    const { context, username } = await newUser()
    const page = await openApp(context)
    await signIn(page, username)
    await page.locator('#sessions tr').first().waitFor()
    await callApi(page)
    await page.mouse.move(0, 0)
    mkdirSync(ARTIFACTS, { recursive: true })
    const path = new URL('demo-after-login.png', ARTIFACTS).pathname
    await page.screenshot({ path, fullPage: true })
    t.ok(statSync(path).size > 10_000, `saved ${path}`)
  })
}
