/**
 * Hostile payloads, headers and cookies against a listening server: prototype pollution, mass
 * assignment, oversized and deeply nested bodies, CR/LF and header injection, huge and
 * duplicate cookies, a refresh cookie with odd characters, a forged Host. The service must
 * answer each with a clear 4xx (never a 500), change nothing it should not, and keep running.
 *
 * References: OWASP Prototype Pollution Prevention Cheat Sheet, OWASP Mass Assignment Cheat
 * Sheet, OWASP Denial of Service Cheat Sheet (input size limits), OWASP WSTG-INPV-15 (HTTP
 * splitting), WSTG-INPV-17 (Host header injection), RFC 6265 §5.4 (cookie order), RFC 9112
 * §5 (field syntax).
 */
import t, { type Test } from 'tap'
import { call, isErrorBody, listen, loginCookie, OWN_ORIGIN, PASSWORD, rawRequest, refreshCookie, registerUser, type Answer, type Served } from '../support/server.js'
import { claimsOf } from '../support/jwt.js'

function assertClientError (t: Test, a: Answer, status: number, code: string, label: string): void {
  t.equal(a.status, status, `${label}: status`)
  t.equal(a.json?.code, code, `${label}: code`)
  t.ok(isErrorBody(a), `${label}: { statusCode, code, message }`)
  t.notMatch(a.text, /at .*\.(ts|js):\d+|SQLITE|SELECT |node_modules/, `${label}: no stack or SQL`)
}

async function stillServing (t: Test, s: Served): Promise<void> {
  t.equal((await call(s, '/health')).status, 200, 'the service still answers')
}

t.test('prototype pollution through JSON bodies is refused and pollutes nothing — OWASP Prototype Pollution Prevention Cheat Sheet', async (t) => {
  const s = await listen(t)
  const bodies = [
    '{"username":"pp1","password":"correct horse battery staple","__proto__":{"roles":["admin"],"polluted":true}}',
    '{"username":"pp2","password":"correct horse battery staple","constructor":{"prototype":{"roles":["admin"],"polluted":true}}}',
    '{"username":{"__proto__":{"polluted":true}},"password":"correct horse battery staple"}',
    '{"username":"pp3","password":"correct horse battery staple","\\u005f_proto__":{"polluted":true}}',
    '{"username":"pp4","password":"correct horse battery staple","__pro\\u0074o__":{"polluted":true}}',
    '[{"__proto__":{"polluted":true}}]'
  ]
  for (const path of ['/api/auth/register', '/api/auth/login', '/api/auth/refresh']) {
    for (const body of bodies) {
      const a = await call(s, path, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
      assertClientError(t, a, 400, 'INVALID_JSON', `${path} ${body.slice(50, 80)}`)
    }
  }
  // Nothing leaked into the server's (this process's) prototypes or into stored data.
  t.equal(({} as Record<string, unknown>).polluted, undefined)
  t.equal(({} as Record<string, unknown>).roles, undefined)
  const created = await registerUser(s, 'after-pollution')
  t.same(created.json.roles, ['user'])
  t.equal(await s.app.repos.users.findByUsernameKey('pp1'), null, 'no account was created from a polluted body')
  await stillServing(t, s)
})

t.test('mass assignment: fields a client may not set are dropped — OWASP Mass Assignment Cheat Sheet', async (t) => {
  const s = await listen(t)
  const a = await call(s, '/api/auth/register', {
    json: { username: 'eve', password: PASSWORD, roles: ['admin'], id: 'chosen-id', disabled: false, createdAt: '2000-01-01T00:00:00.000Z', usernameKey: 'alice' }
  })
  t.equal(a.status, 201)
  t.same(a.json.roles, ['user'])
  t.not(a.json.id, 'chosen-id')
  t.not(a.json.createdAt, '2000-01-01T00:00:00.000Z')
  // The login body cannot smuggle a session id or a token lifetime either.
  const l = await call(s, '/api/auth/login', { json: { username: 'eve', password: PASSWORD, transport: 'body', sid: 'chosen', expiresIn: 99999999, roles: ['admin'] } })
  t.equal(l.status, 200)
  const claims = claimsOf(l.json.accessToken)
  t.not(claims.sid, 'chosen')
  t.same(claims.roles, ['user'])
  t.ok(l.json.expiresIn <= 900)
})

t.test('oversized and deeply nested bodies get 413/400, never a 500 — OWASP Denial of Service Cheat Sheet', async (t) => {
  const s = await listen(t)
  await registerUser(s, 'alice')
  const big = JSON.stringify({ username: 'alice', password: 'x'.repeat(100 * 1024) })
  for (const path of ['/api/auth/register', '/api/auth/login', '/api/auth/refresh', '/api/auth/logout']) {
    assertClientError(t, await call(s, path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: big }), 413, 'PAYLOAD_TOO_LARGE', `${path} 100 KiB`)
  }
  // Without Content-Length (chunked): the limit is enforced while reading.
  const chunked = await rawRequest(s, [
    'POST /api/auth/login HTTP/1.1', 'Host: 127.0.0.1', 'Content-Type: application/json', 'Transfer-Encoding: chunked', 'Connection: close', '', ''
  ].join('\r\n') + `${(64 * 1024).toString(16)}\r\n${'x'.repeat(64 * 1024)}\r\n0\r\n\r\n`)
  t.equal(chunked.status, 413, 'chunked 64 KiB: 413')
  // A password far beyond the maximum is refused by the schema, before any hashing.
  const longPassword = await call(s, '/api/auth/login', { json: { username: 'alice', password: 'p'.repeat(10_000) } })
  assertClientError(t, longPassword, 400, 'VALIDATION_FAILED', '10 000-character password')
  // 5 000 levels of nesting (within the size limit).
  const deep = '['.repeat(5000) + ']'.repeat(5000)
  assertClientError(t, await call(s, '/api/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: deep }), 400, 'VALIDATION_FAILED', 'deep array')
  const deepObject = '{"a":'.repeat(2500) + '1' + '}'.repeat(2500)
  assertClientError(t, await call(s, '/api/auth/register', { method: 'POST', headers: { 'content-type': 'application/json' }, body: deepObject }), 400, 'VALIDATION_FAILED', 'deep object')
  // Malformed JSON and wrong JSON types.
  for (const body of ['{', '{"username":', 'null', '"just a string"', '12', 'true', '{"username":"a\u0000","password":1}', '\uFEFF{}']) {
    const a = await call(s, '/api/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    t.equal(a.status, 400, `body ${JSON.stringify(body)}: ${a.status} ${String(a.json?.code)}`)
    t.ok(isErrorBody(a), `body ${JSON.stringify(body)}: error shape`)
  }
  await stillServing(t, s)
})

t.test('CR/LF and other control characters in headers are refused by the parser with a JSON 400, and nothing is injected into a response — WSTG-INPV-15, RFC 9112 §5', async (t) => {
  const s = await listen(t)
  const requests = [
    // A bare CR inside a cookie value, and a bare LF inside a header value.
    'POST /api/auth/refresh HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://localhost:3000\r\nCookie: refresh_token=abc\rSet-Cookie: injected=1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
    'GET /api/auth/me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer a.b.c\nX-Injected: 1\r\nConnection: close\r\n\r\n',
    // NUL in a header value, and a header name with a space.
    'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Test: a\u0000b\r\nConnection: close\r\n\r\n',
    'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\nConnection: close\r\n\r\n'
  ]
  for (const request of requests) {
    const r = await rawRequest(s, request)
    t.equal(r.status, 400, `${JSON.stringify(request.slice(0, 60))}: 400`)
    t.notMatch(r.head, /injected|X-Injected/i, 'nothing injected into the answer')
    const body = JSON.parse(r.body)
    t.equal(body.statusCode, 400)
    t.match(body.code, /^[A-Z][A-Z0-9_]*$/, 'a stable error code')
  }
  // Percent-encoded CR/LF in the cookie reaches the app decoded, and is just an invalid token.
  const encoded = await refreshCookie(s, 'refresh_token=abc%0D%0ASet-Cookie:%20injected=1')
  t.equal(encoded.status, 401)
  t.equal(encoded.json.code, 'REFRESH_TOKEN_INVALID')
  t.notOk(encoded.setCookies.some((c) => /injected/.test(c)), 'no injected Set-Cookie')
  // Values a client sends are never echoed into response headers (request id is our own).
  const echo = await call(s, '/health', { headers: { 'x-request-id': 'attacker-chosen' } })
  t.not(echo.headers.get('x-request-id'), 'attacker-chosen')
  await stillServing(t, s)
})

t.test('huge cookies and headers: 431 from the parser or 401 from the app, never a 500 — OWASP Denial of Service Cheat Sheet', async (t) => {
  const s = await listen(t)
  // Within the header limit: just an invalid token.
  const large = await refreshCookie(s, `refresh_token=${'a'.repeat(12 * 1024)}`)
  t.equal(large.status, 401)
  t.equal(large.json.code, 'REFRESH_TOKEN_INVALID')
  // Many cookies, none ours.
  const many = await refreshCookie(s, Array.from({ length: 500 }, (_, i) => `c${i}=v${i}`).join('; '))
  t.equal(many.status, 401)
  t.equal(many.json.code, 'REFRESH_TOKEN_MISSING')
  // Beyond Node's header limit (16 KiB): the parser refuses the request before the app sees it.
  const huge = await rawRequest(s, `POST /api/auth/refresh HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: refresh_token=${'a'.repeat(40 * 1024)}\r\nConnection: close\r\n\r\n`)
  t.equal(huge.status, 431)
  const body = JSON.parse(huge.body)
  t.equal(body.statusCode, 431)
  t.match(body.code, /^[A-Z][A-Z0-9_]*$/)
  await stillServing(t, s)
})

t.test('duplicate refresh cookies: the first one (the most specific path, RFC 6265 §5.4) is used and a junk twin spends nothing — OWASP Session Management (cookie tossing)', async (t) => {
  const s = await listen(t)
  await registerUser(s, 'alice')
  const l = await loginCookie(s, 'alice', PASSWORD, { origin: OWN_ORIGIN })
  // A tossed junk cookie listed first: refused, and the real token is not spent or cleared.
  const junkFirst = await refreshCookie(s, `refresh_token=junk; refresh_token=${l.refreshToken}`)
  t.equal(junkFirst.status, 401)
  t.equal(junkFirst.json.code, 'REFRESH_TOKEN_INVALID')
  // The real token listed first: it rotates.
  const realFirst = await refreshCookie(s, `refresh_token=${l.refreshToken}; refresh_token=junk`)
  t.equal(realFirst.status, 200)
})

t.test('a refresh cookie with odd characters is a plain 401, never a 500 — OWASP Session Management, RFC 6265 §4.1.1', async (t) => {
  const s = await listen(t)
  await registerUser(s, 'alice')
  const l = await loginCookie(s, 'alice', PASSWORD, { origin: OWN_ORIGIN })
  const odd = [
    'refresh_token=', 'refresh_token="', 'refresh_token=""', 'refresh_token=%', 'refresh_token=%ZZ', 'refresh_token=%E0%A4%A',
    'refresh_token=%00', 'refresh_token=a b c', 'refresh_token=\u00e9\u00e8', 'refresh_token=;;;', 'refresh_token==',
    'refresh_token=../../etc/passwd', "refresh_token=' OR 1=1 --", 'refresh_token={"$ne":null}', 'refresh_token=__proto__',
    '__proto__=x; constructor=y; refresh_token=z', `refresh_token=${l.refreshToken}x`, `refresh_token=${l.refreshToken.slice(0, -1)}`,
    `refresh_token=${l.refreshToken.slice(0, -1)}${l.refreshToken.endsWith('A') ? 'B' : 'A'}`, `refresh_token=${Buffer.from(l.refreshToken).toString('base64')}`
  ]
  for (const cookie of odd) {
    const a = await refreshCookie(s, cookie)
    t.equal(a.status, 401, `${cookie.slice(0, 50)}: 401`)
    t.ok(['REFRESH_TOKEN_INVALID', 'REFRESH_TOKEN_MISSING'].includes(a.json?.code), `${cookie.slice(0, 50)}: ${String(a.json?.code)}`)
  }
  // None of it touched the real session.
  t.equal((await refreshCookie(s, `refresh_token=${l.refreshToken}`)).status, 200)
})

t.test('a forged Host or X-Forwarded-Host does not change the issuer or the JWKS URL — OWASP WSTG-INPV-17 (Host header injection)', async (t) => {
  const s = await listen(t, { TRUST_PROXY: 'true' })
  const honest = (await call(s, '/.well-known/openid-configuration')).json
  const forged: Array<Record<string, string>> = [{ host: 'evil.example' }, { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' }]
  for (const headers of forged) {
    const a = await call(s, '/.well-known/openid-configuration', { headers })
    t.equal(a.status, 200)
    t.same(a.json, honest)
    t.notMatch(a.text, /evil/)
  }
  t.equal(honest.issuer, 'http://localhost:3000')
})
