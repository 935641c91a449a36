/**
 * Cross-site request forgery and CORS probes from a foreign origin, over a listening server.
 * The refresh cookie is sent by the browser on its own, so every cookie-mode request (login,
 * refresh, logout without a body token) from a page that is not ours must be refused before
 * anything changes; and no foreign page may read a response.
 *
 * References: OWASP Cross-Site Request Forgery Prevention Cheat Sheet ("Verifying Origin With
 * Standard Headers", "SameSite Cookie Attribute", "Employing Custom Request Headers for
 * AJAX/API"), RFC 9700 §4.7 (CSRF), OWASP HTML5 Security Cheat Sheet (CORS: "Do not use the
 * wildcard origin with credentials"), Fetch standard §3.2 (CORS protocol).
 */
import t, { type Test } from 'tap'
import { call, cookieValue, FOREIGN_ORIGIN, listen, loginBody, loginCookie, OWN_ORIGIN, PASSWORD, refreshCookie, registerUser, type Served } from '../support/server.js'

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

async function liveSessions (s: Served, accessToken: string): Promise<number> {
  return (await call(s, '/api/auth/sessions', { headers: { authorization: `Bearer ${accessToken}` } })).json.length
}

function assertCrossSite (t: Test, a: { status: number, json: any, setCookies: string[], headers: Headers }, label: string): void {
  t.equal(a.status, 403, `${label}: status`)
  t.equal(a.json?.code, 'CROSS_SITE_REQUEST', `${label}: code`)
  t.same(a.setCookies, [], `${label}: no cookie is set or cleared`)
  t.equal(a.headers.get('access-control-allow-origin'), null, `${label}: not readable cross-origin`)
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
  // Nothing was created by the refused logins.
  const ok = await loginCookie(s, 'alice', PASSWORD, { origin: OWN_ORIGIN })
  t.equal(await liveSessions(s, ok.accessToken), 1)
  // The allowlisted app origin may log in with the cookie.
  t.equal((await call(s, '/api/auth/login', { json: { username: 'alice', password: PASSWORD }, headers: { origin: APP_ORIGIN } })).status, 200)
})

t.test('CSRF: a cookie-mode refresh from a foreign origin is refused and spends nothing — OWASP CSRF Prevention, RFC 9700 §4.7', async (t) => {
  const s = await listen(t, ENV)
  await registerUser(s, 'alice')
  const { refreshToken } = await loginCookie(s, 'alice', PASSWORD, { origin: OWN_ORIGIN })
  for (const origin of HOSTILE_ORIGINS) {
    assertCrossSite(t, await refreshCookie(s, `refresh_token=${refreshToken}`, { origin }), `refresh from ${origin}`)
  }
  // The token was not spent by any of them: it rotates normally from our own page.
  const mine = await refreshCookie(s, `refresh_token=${refreshToken}`, { origin: OWN_ORIGIN })
  t.equal(mine.status, 200)
  t.not(cookieValue(mine), refreshToken)
})

t.test('CSRF: a cookie-mode logout from a foreign origin is refused and the session stays — OWASP CSRF Prevention', async (t) => {
  const s = await listen(t, ENV)
  await registerUser(s, 'alice')
  const l = await loginCookie(s, 'alice', PASSWORD, { origin: OWN_ORIGIN })
  for (const origin of HOSTILE_ORIGINS) {
    assertCrossSite(t, await call(s, '/api/auth/logout', { method: 'POST', headers: { origin, cookie: `refresh_token=${l.refreshToken}` } }), `logout from ${origin}`)
  }
  t.equal(await liveSessions(s, l.accessToken), 1, 'the session was not ended')
  t.equal((await call(s, '/api/auth/logout', { method: 'POST', headers: { origin: OWN_ORIGIN, cookie: `refresh_token=${l.refreshToken}` } })).status, 204)
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

t.test('body mode needs no Origin check: a forger has no token to put in the body — OWASP CSRF Prevention (token-based)', async (t) => {
  const s = await listen(t, ENV)
  await registerUser(s, 'alice')
  const l = await loginBody(s, 'alice')
  const a = await call(s, '/api/auth/refresh', { json: { refreshToken: l.refreshToken }, headers: { origin: FOREIGN_ORIGIN } })
  t.equal(a.status, 200, 'a mobile or server client may send any Origin in body mode')
  t.equal(a.headers.get('access-control-allow-origin'), null, 'but a foreign page still cannot read the answer')
  t.same(a.setCookies, [])
})
