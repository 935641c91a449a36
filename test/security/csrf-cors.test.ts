/**
 * Cross-site request forgery and CORS probes from a foreign origin, over a listening server
 * (the defences live in routes/auth/refresh-transport.ts). The refresh cookie is sent by the
 * browser on its own, so every cookie-mode request (login, refresh, logout without a body token)
 * from a page that is not ours must be refused before anything changes; and no foreign page may
 * read a response. Each refused request is paired with its legitimate twin, to show that the
 * defence, not something else, refused it.
 *
 * References: OWASP Cross-Site Request Forgery Prevention Cheat Sheet ("Verifying Origin With
 * Standard Headers", "SameSite Cookie Attribute", "Employing Custom Request Headers for
 * AJAX/API"), RFC 9700 §4.7 (CSRF), OWASP HTML5 Security Cheat Sheet (CORS: "Do not use the
 * wildcard origin with credentials"), Fetch standard §3.2 (CORS protocol).
 */
import t, { type Test } from 'tap'
import { count } from '../support/db.js'
import {
  call, cookieValue, FOREIGN_ORIGIN, listen, loginBody, loginCookie, OWN_ORIGIN, PASSWORD, refreshCookie, registerUser, type Answer, type Served
} from '../support/server.js'

const APP_ORIGIN = 'https://app.example.com'
const ENV = { CORS_ORIGINS: APP_ORIGIN }
const HOSTILE_ORIGINS = [
  FOREIGN_ORIGIN,
  'null', // sandboxed iframes, file: pages
  'http://localhost:3001', // our host, another port: same site, another origin
  'https://app.example.com.evil.example', // prefix match
  'https://evil-app.example.com', // suffix match
  'http://app.example.com', // downgraded scheme
  'https://APP.example.com' // a browser never sends this spelling; not on the list as written
]

type Headers = Record<string, string>

async function liveSessions (s: Served, accessToken: string): Promise<number> {
  return (await call(s, '/api/auth/sessions', { headers: { authorization: `Bearer ${accessToken}` } })).json.length
}

/** Sessions not ended, counted in the database (for when no access token is at hand). */
async function sessionsInDb (s: Served): Promise<number> {
  return await count(s.app, 'SELECT count(*) AS n FROM sessions WHERE revoked_at IS NULL')
}

async function spentTokens (s: Served): Promise<number> {
  return await count(s.app, 'SELECT count(*) AS n FROM refresh_tokens WHERE spent_at IS NOT NULL')
}

/** A cookie-mode refresh with exactly these headers (no Origin unless given). */
async function refreshWith (s: Served, token: string, headers: Headers): Promise<Answer> {
  return await call(s, '/api/auth/refresh', { method: 'POST', headers: { cookie: `refresh_token=${token}`, ...headers } })
}

async function logoutWith (s: Served, token: string, headers: Headers): Promise<Answer> {
  return await call(s, '/api/auth/logout', { method: 'POST', headers: { cookie: `refresh_token=${token}`, ...headers } })
}

async function loginWith (s: Served, headers: Headers, username = 'alice'): Promise<Answer> {
  return await call(s, '/api/auth/login', { json: { username, password: PASSWORD }, headers })
}

/** 403 CROSS_SITE_REQUEST, no cookie set or cleared, and (unless it came from the allowlisted app origin) not readable. */
function assertCrossSite (t: Test, a: Answer, label: string, fromAppOrigin = false): void {
  t.equal(a.status, 403, `${label}: status`)
  t.equal(a.json?.code, 'CROSS_SITE_REQUEST', `${label}: code`)
  t.same(a.setCookies, [], `${label}: no cookie is set or cleared`)
  if (!fromAppOrigin) t.equal(a.headers.get('access-control-allow-origin'), null, `${label}: not readable cross-origin`)
}

/** A refused refresh: 403 CROSS_SITE_REQUEST, no cookie set or cleared, and no token spent. */
async function assertRefreshRefused (t: Test, s: Served, token: string, headers: Headers): Promise<void> {
  const label = `refresh with ${JSON.stringify(headers)}`
  assertCrossSite(t, await refreshWith(s, token, headers), label, headers.origin === APP_ORIGIN)
  t.equal(await spentTokens(s), 0, `${label}: the token was not spent`)
}

/** alice, registered and logged in (cookie mode) from our own page. */
async function setup (t: Test, env: Headers = {}): Promise<{ s: Served, refreshToken: string, accessToken: string }> {
  const s = await listen(t, { ...ENV, ...env })
  await registerUser(s, 'alice')
  const { refreshToken, accessToken } = await loginCookie(s, 'alice', PASSWORD, { origin: OWN_ORIGIN, 'x-auth-request': '1' })
  return { s, refreshToken, accessToken }
}

t.test('CSRF: a cookie-mode login from a foreign origin is refused before the credentials are even checked — OWASP CSRF Prevention (Verifying Origin)', async (t) => {
  const s = await listen(t, ENV)
  await registerUser(s, 'alice')
  for (const origin of HOSTILE_ORIGINS) {
    // Login CSRF: the forger logs the victim's browser into the forger's account.
    const right = await call(s, '/api/auth/login', { json: { username: 'alice', password: PASSWORD }, headers: { origin } })
    assertCrossSite(t, right, `right password from ${origin}`)
    const wrong = await call(s, '/api/auth/login', { json: { username: 'alice', password: 'wrong wrong wrong' }, headers: { origin } })
    t.equal(wrong.status, 403, `wrong password from ${origin} gets the same 403: no password oracle`)
  }
  // Without Origin, Fetch Metadata that is not same-origin is refused too.
  for (const site of ['cross-site', 'same-site']) assertCrossSite(t, await loginWith(s, { 'sec-fetch-site': site }), `login with sec-fetch-site ${site}`)
  t.equal(await sessionsInDb(s), 0, 'nothing was created by the refused logins')
  // The legitimate twins: our own page, and the allowlisted app origin (cross-site to us).
  const ok = await loginCookie(s, 'alice', PASSWORD, { origin: OWN_ORIGIN })
  t.equal(await liveSessions(s, ok.accessToken), 1)
  t.equal((await loginWith(s, { origin: APP_ORIGIN })).status, 200, 'the app origin')
  t.equal((await loginWith(s, { origin: APP_ORIGIN, 'sec-fetch-site': 'cross-site' })).status, 200, 'the app origin, with the Fetch Metadata a browser sends')
})

t.test('CSRF: a cookie-mode refresh from a foreign origin is refused and spends nothing — OWASP CSRF Prevention, RFC 9700 §4.7', async (t) => {
  const { s, refreshToken } = await setup(t)
  for (const origin of HOSTILE_ORIGINS) await assertRefreshRefused(t, s, refreshToken, { origin })
  // The token was not spent by any of them: it rotates normally from the app origin...
  const app = await refreshWith(s, refreshToken, { origin: APP_ORIGIN, 'sec-fetch-site': 'cross-site' })
  t.equal(app.status, 200, 'a CORS_ORIGINS origin')
  t.not(cookieValue(app), refreshToken)
  // ...and from our own page.
  const mine = await refreshCookie(s, `refresh_token=${cookieValue(app)!}`, { origin: OWN_ORIGIN, 'sec-fetch-site': 'same-origin' })
  t.equal(mine.status, 200, 'PUBLIC_URL\'s origin')
  t.not(cookieValue(mine), cookieValue(app))
})

t.test('CSRF: Sec-Fetch-Site without an allowed Origin: only same-origin passes — OWASP CSRF Prevention (Fetch Metadata)', async (t) => {
  const { s, refreshToken } = await setup(t)
  // A browser that hides Origin (an extension, a proxy) still sends Fetch Metadata.
  for (const site of ['cross-site', 'same-site', 'none', 'something-new']) {
    await assertRefreshRefused(t, s, refreshToken, { 'sec-fetch-site': site })
  }
  // A page on a sibling subdomain or another port is same-site: SameSite=Strict does not stop it.
  await assertRefreshRefused(t, s, refreshToken, { 'sec-fetch-site': 'same-site', origin: 'http://localhost:4000' })
  const ok = await refreshWith(s, refreshToken, { 'sec-fetch-site': 'same-origin' })
  t.equal(ok.status, 200, 'same-origin without Origin')
  const site = await refreshWith(s, cookieValue(ok)!, { 'sec-fetch-site': 'same-site', origin: APP_ORIGIN })
  t.equal(site.status, 200, 'same-site with an allowed Origin')
})

t.test('CSRF: neither Origin nor Sec-Fetch-Site: a request with the cookie needs an allowed Referer — OWASP CSRF Prevention (Verifying Origin)', async (t) => {
  const { s, refreshToken } = await setup(t)
  await assertRefreshRefused(t, s, refreshToken, {})
  await assertRefreshRefused(t, s, refreshToken, { referer: 'https://evil.example/page' })
  await assertRefreshRefused(t, s, refreshToken, { referer: 'not a url' })
  const ok = await refreshWith(s, refreshToken, { referer: `${APP_ORIGIN}/settings?tab=1` })
  t.equal(ok.status, 200, 'a Referer on the allowlist proves the origin')
  const self = await refreshWith(s, cookieValue(ok)!, { referer: `${OWN_ORIGIN}/demo/` })
  t.equal(self.status, 200, 'a Referer on our own origin')

  // A request without the cookie has nothing to forge: a non-browser client may log in.
  t.equal((await loginWith(s, {})).status, 200, 'a login without cookie, Origin or Fetch Metadata')
  const missing = await call(s, '/api/auth/refresh', { method: 'POST' })
  t.equal(missing.json?.code, 'REFRESH_TOKEN_MISSING', 'no cookie: nothing to refuse, 401 as usual')
  // curl in cookie mode: send the service's own origin.
  t.equal((await refreshWith(s, cookieValue(self)!, { origin: OWN_ORIGIN })).status, 200, 'curl -H "Origin: http://localhost:3000"')
})

t.test('CSRF: a cookie-mode logout from a foreign origin is refused and the session stays — OWASP CSRF Prevention', async (t) => {
  const { s, refreshToken, accessToken } = await setup(t)
  const attempts: Headers[] = [...HOSTILE_ORIGINS.map((origin) => ({ origin })), { 'sec-fetch-site': 'cross-site' }, {}]
  for (const headers of attempts) {
    assertCrossSite(t, await logoutWith(s, refreshToken, headers), `logout with ${JSON.stringify(headers)}`)
  }
  t.equal(await liveSessions(s, accessToken), 1, 'the session was not ended')
  t.equal((await call(s, '/api/auth/me', { headers: { authorization: `Bearer ${accessToken}` } })).status, 200, 'and its access token still works')
  // The legitimate twins: the app origin, and our own page.
  t.equal((await logoutWith(s, refreshToken, { origin: APP_ORIGIN })).status, 204, 'logout from the app origin')
  t.equal(await sessionsInDb(s), 0, 'ended')
  const again = await loginCookie(s, 'alice', PASSWORD, { origin: OWN_ORIGIN })
  t.equal((await logoutWith(s, again.refreshToken, { origin: OWN_ORIGIN })).status, 204, 'logout from our own page')
  t.equal(await sessionsInDb(s), 0, 'ended')
})

t.test('CSRF: "simple" cross-site requests (HTML forms, no-preflight fetch) carrying the cookie change nothing — OWASP CSRF Prevention (content type, custom headers)', async (t) => {
  const s = await listen(t, ENV)
  await registerUser(s, 'alice')
  const l = await loginCookie(s, 'alice', PASSWORD, { origin: OWN_ORIGIN })
  const cookie = `refresh_token=${l.refreshToken}`
  const forms: Array<[string, string]> = [
    ['application/x-www-form-urlencoded', 'username=alice&password=correct+horse+battery+staple'],
    ['text/plain', JSON.stringify({ username: 'alice', password: PASSWORD })],
    ['text/plain', ''],
    ['multipart/form-data; boundary=x', '--x\r\nContent-Disposition: form-data; name="username"\r\n\r\nalice\r\n--x--\r\n']
  ]
  for (const [type, body] of forms) {
    // No Origin header at all: what an old browser or a privacy extension might send.
    for (const path of ['/api/auth/login', '/api/auth/refresh', '/api/auth/logout']) {
      const a = await call(s, path, { method: 'POST', headers: { 'content-type': type, cookie }, body })
      t.ok([400, 403, 415].includes(a.status), `${path} ${type}: refused (${a.status} ${String(a.json?.code)})`)
      t.same(a.setCookies, [], `${path} ${type}: no cookie set or cleared`)
    }
  }
  // Nothing changed: one session, and its refresh token was never spent.
  t.equal(await liveSessions(s, l.accessToken), 1)
  const mine = await refreshCookie(s, cookie, { origin: OWN_ORIGIN })
  t.equal(mine.status, 200)
})

t.test('the refresh cookie is HttpOnly, Secure, SameSite=Strict and scoped to /api/auth — OWASP CSRF Prevention (SameSite), OWASP Session Management (cookie attributes)', async (t) => {
  const s = await listen(t, ENV)
  await registerUser(s, 'alice')
  const { answer } = await loginCookie(s, 'alice', PASSWORD, { origin: OWN_ORIGIN })
  const line = answer.setCookies.find((c) => c.startsWith('refresh_token='))!
  const attrs = line.split(';').slice(1).map((a) => a.trim().toLowerCase())
  t.ok(attrs.includes('httponly'), 'HttpOnly')
  t.ok(attrs.includes('secure'), 'Secure')
  t.ok(attrs.includes('samesite=strict'), 'SameSite=Strict')
  t.ok(attrs.includes('path=/api/auth'), 'Path=/api/auth')
  t.notOk(attrs.some((a) => a.startsWith('domain=')), 'no Domain: host-only, never sent to sibling subdomains')
  t.equal(answer.json.refreshToken, undefined, 'the token is not in the body in cookie mode')
})

t.test('CORS: a foreign origin gets no Access-Control-Allow-Origin, on preflights or on real answers; the allowlisted origin gets exactly itself — OWASP HTML5 Security (CORS)', async (t) => {
  const s = await listen(t, ENV)
  await registerUser(s, 'alice')
  const l = await loginBody(s, 'alice')
  const probes: Array<[string, { method?: string, headers?: Record<string, string>, json?: unknown }]> = [
    ['/api/auth/login', { method: 'OPTIONS', headers: { 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } }],
    ['/api/auth/refresh', { method: 'OPTIONS', headers: { 'access-control-request-method': 'POST' } }],
    ['/api/auth/me', { method: 'OPTIONS', headers: { 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' } }],
    ['/api/auth/me', { headers: { authorization: `Bearer ${l.accessToken}` } }],
    ['/api/auth/sessions', { headers: { authorization: `Bearer ${l.accessToken}` } }],
    ['/api/auth/login', { json: { username: 'alice', password: PASSWORD, transport: 'body' } }]
  ]
  for (const [path, init] of probes) {
    for (const origin of HOSTILE_ORIGINS) {
      const a = await call(s, path, { ...init, headers: { ...init.headers, origin } })
      t.ok(a.status < 500, `${init.method ?? 'GET/POST'} ${path} from ${origin}: ${a.status}`)
      t.equal(a.headers.get('access-control-allow-origin'), null, `${init.method ?? ''} ${path} from ${origin}: no ACAO`)
      t.equal(a.headers.get('access-control-allow-credentials'), null, `${init.method ?? ''} ${path} from ${origin}: no ACAC`)
    }
    const good = await call(s, path, { ...init, headers: { ...init.headers, origin: APP_ORIGIN } })
    t.equal(good.headers.get('access-control-allow-origin'), APP_ORIGIN, `${path} from the app origin: exactly its origin, never *`)
    t.equal(good.headers.get('access-control-allow-credentials'), 'true', `${path} from the app origin: with credentials`)
  }
})

t.test('SameSite=None: the cookie says so, is Secure, and cookie-mode requests need X-Auth-Request: 1 — OWASP CSRF Prevention (custom request headers)', async (t) => {
  const s = await listen(t, { ...ENV, REFRESH_COOKIE_SAMESITE: 'None' })
  await registerUser(s, 'alice')
  assertCrossSite(t, await loginWith(s, { origin: APP_ORIGIN }), 'login without the custom header', true)
  assertCrossSite(t, await loginWith(s, { origin: APP_ORIGIN, 'x-auth-request': 'yes' }), 'login with the header not exactly 1', true)
  const { answer, refreshToken } = await loginCookie(s, 'alice', PASSWORD, { origin: APP_ORIGIN, 'x-auth-request': '1' })
  t.equal(answer.status, 200, 'login with X-Auth-Request: 1')
  t.match(answer.setCookies.find((c) => c.startsWith('refresh_token='))!, /; HttpOnly; Secure; SameSite=None$/)
  await assertRefreshRefused(t, s, refreshToken, { origin: APP_ORIGIN, 'sec-fetch-site': 'cross-site' })
  const ok = await refreshWith(s, refreshToken, { origin: APP_ORIGIN, 'sec-fetch-site': 'cross-site', 'x-auth-request': '1' })
  t.equal(ok.status, 200, 'refresh with X-Auth-Request: 1')
  assertCrossSite(t, await logoutWith(s, cookieValue(ok)!, { origin: APP_ORIGIN }), 'logout without the custom header', true)
  t.equal((await logoutWith(s, cookieValue(ok)!, { origin: APP_ORIGIN, 'x-auth-request': '1' })).status, 204, 'logout with it')
  // The header does not replace the Origin check.
  const again = await loginCookie(s, 'alice', PASSWORD, { origin: APP_ORIGIN, 'x-auth-request': '1' })
  assertCrossSite(t, await refreshWith(s, again.refreshToken, { origin: FOREIGN_ORIGIN, 'x-auth-request': '1' }), 'a foreign origin with the header')
  t.equal((await refreshWith(s, again.refreshToken, { origin: APP_ORIGIN, 'x-auth-request': '1' })).status, 200, 'the same token from the app origin')
})

t.test('SameSite=Strict and Lax do not require the custom header; the cookie carries the configured SameSite', async (t) => {
  for (const sameSite of ['Strict', 'Lax'] as const) {
    const s = await listen(t, { REFRESH_COOKIE_SAMESITE: sameSite.toLowerCase() })
    await registerUser(s, 'alice')
    const { answer } = await loginCookie(s, 'alice', PASSWORD, { origin: OWN_ORIGIN })
    t.equal(answer.status, 200)
    t.match(answer.setCookies.find((c) => c.startsWith('refresh_token='))!,
      new RegExp(`^refresh_token=[A-Za-z0-9_-]{64}; Max-Age=604800; Path=/api/auth; HttpOnly; Secure; SameSite=${sameSite}$`))
  }
})

t.test('body mode needs no Origin check: a forger has no token to put in the body — OWASP CSRF Prevention (token-based)', async (t) => {
  // SameSite=None, the strictest cookie-mode setting: body mode still needs no custom header.
  const s = await listen(t, { ...ENV, REFRESH_COOKIE_SAMESITE: 'None' })
  await registerUser(s, 'alice')
  const hostile = { origin: FOREIGN_ORIGIN, 'sec-fetch-site': 'cross-site' }
  const l = await loginBody(s, 'alice', PASSWORD, hostile)
  t.equal(l.answer.status, 200, 'a mobile or server client may log in with any Origin in body mode')
  const a = await call(s, '/api/auth/refresh', { json: { refreshToken: l.refreshToken }, headers: hostile })
  t.equal(a.status, 200, 'and refresh')
  t.ok(a.json.refreshToken, 'the rotated token comes back in the body')
  t.equal(a.headers.get('access-control-allow-origin'), null, 'but a foreign page still cannot read the answer')
  t.same(a.setCookies, [])
})
