/**
 * Real servers and a real browser for the SPA tests: the API and the demo app listen on two
 * ports of 127.0.0.1 (two origins, one site), a third port serves a hostile page, and Debian's
 * Chromium is driven by playwright-core (never a downloaded browser).
 */
import { existsSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { chromium, type Browser } from 'playwright-core'
import type { Test } from 'tap'
import { freePort, listen } from './server.js'

export const CHROMIUM = '/usr/bin/chromium'
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'
]

/** Why the browser tests cannot run here, or null when they can. In CI they must run. */
export function browserUnavailable (): string | null {
  if (existsSync(CHROMIUM)) return null
  const message = `${CHROMIUM} not found: install Debian's Chromium with \`apt-get install -y chromium\` to run the browser tests`
  if (process.env.CI === 'true' || process.env.CI === '1') throw new Error(`CI=${process.env.CI}: ${message}`)
  return message
}

export async function launchBrowser (): Promise<Browser> {
  return await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 })
}

/**
 * A browser test file's frame: `run(browser)` with Chromium launched, closed at `t`'s teardown
 * (after whatever `run` registered there); where Chromium is missing, no test is planned, and
 * the comment and the skip say why (browserUnavailable: in CI that throws instead).
 */
export async function inChromium (t: Test, run: (browser: Browser) => Promise<void>): Promise<void> {
  const unavailable = browserUnavailable()
  if (unavailable !== null) {
    t.comment(unavailable)
    t.plan(0, unavailable)
    return
  }
  let browser: Browser | undefined
  t.teardown(async () => { await browser?.close() })
  browser = await launchBrowser()
  await run(browser)
}

/** One JSON log line of the API: the per-request line has method, route and statusCode. */
export interface LogLine { msg: string, method?: string, route?: string | null, statusCode?: number, code?: string, reason?: string }

export interface Servers {
  api: FastifyInstance
  apiOrigin: string
  spaOrigin: string
  /** Unlisted origins serving a hostile page: same site as the API (another port), and another site. */
  hostileOrigins: { sameSite: string, crossSite: string }
  /** Everything the API logged, in order. */
  log: LogLine[]
  /** Status codes the API answered on a route since log index `from`. */
  statuses: (method: string, route: string, from?: number) => number[]
  liveSessions: (username: string) => number
  close: () => Promise<void>
}

/**
 * The hostile page: a button-free page whose script the test drives, and a form that posts to
 * the API's refresh endpoint as soon as it loads (the classic cross-site form POST).
 */
function hostilePage (apiOrigin: string, path: string): string {
  if (path === '/form') {
    return `<!doctype html><form id="f" method="POST" action="${apiOrigin}/api/auth/refresh">` +
      '<input name="refreshToken" value="x"></form><script>document.getElementById("f").submit()</script>'
  }
  return '<!doctype html><title>not your app</title><p>Nothing to see here.</p>'
}

export async function startServers (env: Record<string, string>): Promise<Servers> {
  const [apiPort, spaPort, hostilePort] = [await freePort(), await freePort(), await freePort()]
  const apiOrigin = `http://127.0.0.1:${apiPort}`
  const spaOrigin = `http://127.0.0.1:${spaPort}`
  const log: LogLine[] = []
  const logStream = new Writable({
    write (chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') log.push(JSON.parse(line) as LogLine)
      done()
    }
  })

  const { app: api } = await listen(null, {
    PUBLIC_URL: apiOrigin,
    CORS_ORIGINS: spaOrigin,
    DEMO_ENABLED: 'false',
    LOG_LEVEL: 'info',
    ...env
  }, { logStream, port: apiPort })

  // The demo app is served by a second instance of the service, on its own origin, talking to
  // the API above across origins.
  const { app: spa } = await listen(null, { PUBLIC_URL: spaOrigin, DEMO_ENABLED: 'true', DEMO_API_URL: apiOrigin }, { port: spaPort })
  // Transpile the modules once now, not inside a browser test's time budget.
  for (const name of ['auth-client', 'demo']) await spa.inject({ url: `/demo/${name}.js` })

  const hostile: Server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(hostilePage(apiOrigin, req.url ?? '/'))
  })
  await new Promise<void>((resolve) => hostile.listen(hostilePort, '127.0.0.1', resolve))

  return {
    api,
    apiOrigin,
    spaOrigin,
    // localhost and 127.0.0.1 are different sites to the browser.
    hostileOrigins: { sameSite: `http://127.0.0.1:${hostilePort}`, crossSite: `http://localhost:${hostilePort}` },
    log,
    statuses: (method, route, from = 0) => log.slice(from)
      .filter((l) => l.msg === 'request' && l.method === method && l.route === route)
      .map((l) => l.statusCode as number),
    liveSessions: (username) => (api.sqlite.prepare(
      'SELECT count(*) AS n FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = ? AND s.revoked_at IS NULL AND s.expires_at > ?'
    ).get(username, Date.now()) as { n: number }).n,
    close: async () => {
      hostile.closeAllConnections()
      await Promise.all([
        api.close(),
        spa.close(),
        new Promise<void>((resolve) => hostile.close(() => resolve()))
      ])
    }
  }
}
