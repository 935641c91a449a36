/**
 * A browser app opened at an address the service does not expect (http://127.0.0.1:3000 while
 * PUBLIC_URL is http://localhost:3000, a remapped container port) is refused in cookie mode with
 * a 403 that says which origin arrived, which origins are allowed, and which settings to change.
 */
import t from 'tap'
import { buildTestApp, login, register, until } from './support/app.js'
import { startServer } from './support/process.js'

const SELF = 'http://localhost:3000' // PUBLIC_URL in the test config
const SPA = 'https://app.example.com'

t.test('the 403 names the origin that arrived, the allowed ones, PUBLIC_URL and CORS_ORIGINS', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: SPA })
  await register(app)
  const { res } = await login(app, { headers: { origin: 'http://127.0.0.1:3000' } })
  t.equal(res.statusCode, 403)
  const body = res.json()
  t.equal(body.code, 'CROSS_SITE_REQUEST')
  t.equal(body.message, `Cross-site request refused: the request came from origin "http://127.0.0.1:3000", which is not allowed; cookie mode accepts ${SELF}, ${SPA}; open the app there, or add its origin to CORS_ORIGINS (or set PUBLIC_URL to the address users open)`)
  t.notMatch(body.message, /\n/, 'one line')
})

t.test('without an Origin header the message says what was missing and what is allowed', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const { res } = await login(app, { headers: { 'sec-fetch-site': 'cross-site' } })
  t.equal(res.statusCode, 403)
  t.equal(res.json().message, `Cross-site request refused: the request came from another site (Sec-Fetch-Site: "cross-site") without an allowed Origin header; cookie mode accepts ${SELF}; open the app there, or add its origin to CORS_ORIGINS (or set PUBLIC_URL to the address users open)`)
})

t.test('a long or odd Origin is shown quoted and cut, never as given', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const origin = 'https://' + 'x'.repeat(500) + '.example'
  const { res } = await login(app, { headers: { origin } })
  t.equal(res.statusCode, 403)
  t.match(res.json().message, /came from origin "https:\/\/x{192}…", which is not allowed/)
})

t.test('SameSite=None without the custom header says which header is missing', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: SPA, REFRESH_COOKIE_SAMESITE: 'None' })
  await register(app)
  const { res } = await login(app, { headers: { origin: SPA } })
  t.equal(res.statusCode, 403)
  t.equal(res.json().message, 'Cross-site request refused: with REFRESH_COOKIE_SAMESITE=None a cookie-mode request must carry the header X-Auth-Request: 1')
})

t.test('the start log says which origins cookie mode accepts', async (t) => {
  const server = await startServer({ DATABASE_URL: ':memory:', PUBLIC_URL: 'http://localhost:3999', CORS_ORIGINS: SPA })
  t.teardown(async () => { await server.kill() })
  // Logged just after the listening line that startServer waits for.
  await until(() => server.stdout().includes('"cookieOrigins"'))
  const found = server.stdout().split('\n').filter((l) => l.includes('"cookieOrigins"'))
    .map((l) => JSON.parse(l) as { msg: string, cookieOrigins: string[] })[0]
  t.ok(found, 'a start log line lists the origins')
  t.same(found?.cookieOrigins, ['http://localhost:3999', SPA])
  t.equal(found?.msg, `cookie mode accepts requests from http://localhost:3999, ${SPA} (PUBLIC_URL, CORS_ORIGINS); open browser apps there`)
})
