/**
 * Forged and confused access tokens against a listening server. Every forged token is sent to
 * GET /api/auth/me, a Bearer endpoint, and must get 401 with `WWW-Authenticate: Bearer ...
 * error="invalid_token"`. The first test proves the forging helper itself makes tokens the
 * service accepts when nothing is wrong, so each refusal below is down to the one thing the
 * attack changes.
 *
 * References: RFC 8725 (JSON Web Token Best Current Practices), RFC 7519 (JWT) §4.1,
 * RFC 9068 (JWT profile for access tokens) §2.1/§4.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, sign as cryptoSign, type KeyObject } from 'node:crypto'
import { createServer } from 'node:http'
import { exportJWK, SignJWT, type JWTPayload } from 'jose'
import t, { type Test } from 'tap'
import { call, listen, loginBody, me, registerUser, type Answer, type Served } from '../support/server.js'
import { claimsOf, headerOf } from '../support/jwt.js'
import { lowS, withLowS } from '../keys/support.js'

const b64url = (v: string | Buffer | Uint8Array): string => Buffer.from(v).toString('base64url')
const json64 = (v: unknown): string => b64url(JSON.stringify(v))

interface Victim {
  s: Served
  accessToken: string
  claims: Record<string, any>
  header: Record<string, any>
  /** The service's current private signing key (test-only access, to forge "correctly signed" tokens). */
  signingKey: KeyObject
  kid: string
  alg: string
}

async function victim (t: Test, env: Record<string, string> = {}): Promise<Victim> {
  const s = await listen(t, env)
  t.equal((await registerUser(s, 'victim')).status, 201)
  const { accessToken } = await loginBody(s, 'victim')
  const key = s.app.keyRing.signingKey(new Date())
  return {
    s,
    accessToken,
    claims: claimsOf(accessToken),
    header: headerOf(accessToken),
    signingKey: createPrivateKey(key.signKey),
    kid: key.kid,
    alg: key.alg
  }
}

/** Signs `claims` with `header` (alg from the header) using jose. */
async function sign (header: Record<string, unknown>, claims: JWTPayload, key: KeyObject | Uint8Array): Promise<string> {
  const token = await new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(key)
  // The service accepts only the low S of an ES256 signature (one token string, one signature).
  return header.alg === 'ES256' ? withLowS(token) : token
}

/** ES256 by hand, for headers jose refuses to produce (hostile kid types, `crit`). */
function signEs256Raw (header: unknown, claims: unknown, key: KeyObject): string {
  const data = `${json64(header)}.${json64(claims)}`
  return `${data}.${b64url(lowS(cryptoSign('sha256', Buffer.from(data), { key, dsaEncoding: 'ieee-p1363' })))}`
}

function fresh (v: Victim, overrides: Record<string, unknown> = {}): JWTPayload {
  const now = Math.floor(Date.now() / 1000)
  return { ...v.claims, iat: now, exp: now + 600, jti: randomUUID(), ...overrides }
}

function assertRefused (t: Test, a: Answer, code = 'ACCESS_TOKEN_INVALID', label = ''): void {
  t.equal(a.status, 401, `${label} status`)
  t.equal(a.json?.code, code, `${label} code`)
  t.match(a.headers.get('www-authenticate') ?? '', /^Bearer realm="[^"]*", error="invalid_token"/, `${label} challenge`)
}

t.test('control: a token forged with the real key and correct claims is accepted (so each refusal below is meaningful)', async (t) => {
  const v = await victim(t)
  const token = await sign({ alg: v.alg, kid: v.kid, typ: 'at+jwt' }, fresh(v), v.signingKey)
  const a = await me(v.s, token)
  t.equal(a.status, 200)
  t.equal(a.json.username, 'victim')
})

t.test('alg "none" (unsecured JWT) is refused — RFC 8725 §2.1, §3.1', async (t) => {
  const v = await victim(t)
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    const header = json64({ alg, kid: v.kid, typ: 'at+jwt' })
    const payload = json64(fresh(v))
    for (const token of [`${header}.${payload}.`, `${header}.${payload}.${v.accessToken.split('.')[2]}`]) {
      assertRefused(t, await me(v.s, token), 'ACCESS_TOKEN_INVALID', alg)
    }
  }
})

t.test('HS256 signed with the public key, in each of its encodings, is refused (key confusion) — RFC 8725 §2.1, §3.1', async (t) => {
  for (const algorithm of ['ES256', 'RS256', 'EdDSA']) {
    const v = await victim(t, { JWT_ALGORITHM: algorithm })
    // What any attacker can fetch: the JWKS.
    const jwks = (await call(v.s, '/.well-known/jwks.json')).json
    const jwk = jwks.keys.find((k: { kid: string }) => k.kid === v.kid)
    t.ok(jwk, `${algorithm}: the signing key is published`)
    const pub = createPublicKey({ key: jwk, format: 'jwk' })
    const pem = pub.export({ format: 'pem', type: 'spki' }) as string
    const der = pub.export({ format: 'der', type: 'spki' })
    const encodings: Record<string, string | Buffer> = {
      'SPKI PEM': pem,
      'SPKI PEM without trailing newline': pem.trimEnd(),
      'SPKI PEM with CRLF': pem.replace(/\n/g, '\r\n'),
      'SPKI DER bytes': der,
      'SPKI DER base64': der.toString('base64'),
      'SPKI DER base64url': der.toString('base64url'),
      'JWK JSON as published': JSON.stringify(jwk),
      'JWK JSON (RFC 7638 members only)': JSON.stringify(Object.fromEntries(Object.entries(jwk).filter(([k]) => ['crv', 'e', 'kty', 'n', 'x', 'y'].includes(k)).sort())),
      'JWKS document': JSON.stringify(jwks),
      kid: v.kid
    }
    if (algorithm === 'RS256') encodings['PKCS#1 PEM'] = pub.export({ format: 'pem', type: 'pkcs1' }) as string
    if (algorithm === 'ES256') {
      encodings['uncompressed EC point'] = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url')])
    }
    for (const [name, secret] of Object.entries(encodings)) {
      const token = await sign({ alg: 'HS256', kid: v.kid, typ: 'at+jwt' }, fresh(v), typeof secret === 'string' ? Buffer.from(secret) : secret)
      assertRefused(t, await me(v.s, token), 'ACCESS_TOKEN_INVALID', `${algorithm} / ${name}`)
    }
  }
})

t.test('a token whose alg names another asymmetric algorithm than its kid\'s key is refused — RFC 8725 §3.1', async (t) => {
  const v = await victim(t) // ES256 key
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const ed = generateKeyPairSync('ed25519')
  assertRefused(t, await me(v.s, await sign({ alg: 'RS256', kid: v.kid, typ: 'at+jwt' }, fresh(v), rsa.privateKey)), 'ACCESS_TOKEN_INVALID', 'RS256')
  assertRefused(t, await me(v.s, await sign({ alg: 'EdDSA', kid: v.kid, typ: 'at+jwt' }, fresh(v), ed.privateKey)), 'ACCESS_TOKEN_INVALID', 'EdDSA')
  // ES384/ES512 and PS256 are not accepted algorithms at all.
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' })
  assertRefused(t, await me(v.s, await sign({ alg: 'ES384', kid: v.kid, typ: 'at+jwt' }, fresh(v), p384.privateKey)), 'ACCESS_TOKEN_INVALID', 'ES384')
  assertRefused(t, await me(v.s, await sign({ alg: 'PS256', kid: v.kid, typ: 'at+jwt' }, fresh(v), rsa.privateKey)), 'ACCESS_TOKEN_INVALID', 'PS256')
})

t.test('a stripped or truncated signature is refused — RFC 8725 §3.1, RFC 7515 §5.2', async (t) => {
  const v = await victim(t)
  const [h, p, sig] = v.accessToken.split('.') as [string, string, string]
  for (const [name, token] of Object.entries({
    'empty signature': `${h}.${p}.`,
    'no signature part': `${h}.${p}`,
    'truncated signature': `${h}.${p}.${sig.slice(0, -4)}`,
    'signature of zeros': `${h}.${p}.${b64url(Buffer.alloc(64))}`,
    'signature bit flipped': `${h}.${p}.${b64url(Buffer.from(sig, 'base64url').map((b, i) => i === 10 ? b ^ 1 : b))}`
  })) {
    assertRefused(t, await me(v.s, token), 'ACCESS_TOKEN_INVALID', name)
  }
})

t.test('tampered claims with the original signature are refused — RFC 8725 §3.1 (the signature covers the claims)', async (t) => {
  const v = await victim(t)
  t.equal((await registerUser(v.s, 'other')).status, 201)
  const other = claimsOf((await loginBody(v.s, 'other')).accessToken)
  const [h, , sig] = v.accessToken.split('.') as [string, string, string]
  for (const [name, change] of Object.entries({
    'roles raised to admin': { roles: ['admin', 'user'] },
    'sub switched to another user': { sub: other.sub },
    'sid switched to another session': { sid: other.sid, sub: other.sub },
    'exp extended by a year': { exp: v.claims.exp + 365 * 86400 }
  })) {
    assertRefused(t, await me(v.s, `${h}.${json64({ ...v.claims, ...change })}.${sig}`), 'ACCESS_TOKEN_INVALID', name)
  }
  // The untouched original still works: the refusals are the tampering's doing.
  t.equal((await me(v.s, v.accessToken)).status, 200)
})

t.test('correctly signed tokens with the wrong issuer, audience or type are refused — RFC 8725 §3.8, §3.9, §3.11; RFC 9068 §4', async (t) => {
  const v = await victim(t)
  const header = { alg: v.alg, kid: v.kid, typ: 'at+jwt' }
  const cases: Array<[string, Record<string, unknown>, JWTPayload]> = [
    ['wrong iss', header, fresh(v, { iss: 'https://issuer.evil.example' })],
    ['no iss', header, fresh(v, { iss: undefined })],
    ['wrong aud', header, fresh(v, { aud: 'https://another-service.example' })],
    ['aud list without ours', header, fresh(v, { aud: ['https://a.example', 'https://b.example'] })],
    ['no aud', header, fresh(v, { aud: undefined })],
    ['typ JWT (an ID token or other JWT)', { ...header, typ: 'JWT' }, fresh(v)],
    ['no typ', { alg: v.alg, kid: v.kid }, fresh(v)],
    ['typ of a logout token', { ...header, typ: 'logout+jwt' }, fresh(v)],
    ['no sid', header, fresh(v, { sid: undefined })],
    ['no sub', header, fresh(v, { sub: undefined })],
    ['no exp', header, fresh(v, { exp: undefined })]
  ]
  for (const [name, h, claims] of cases) {
    assertRefused(t, await me(v.s, await sign(h, claims, v.signingKey)), 'ACCESS_TOKEN_INVALID', name)
  }
})

t.test('an expired token is refused — RFC 7519 §4.1.4', async (t) => {
  const v = await victim(t)
  const now = Math.floor(Date.now() / 1000)
  // Past the configured clock tolerance (5 s by default).
  const token = await sign({ alg: v.alg, kid: v.kid, typ: 'at+jwt' }, fresh(v, { iat: now - 1000, exp: now - 60 }), v.signingKey)
  assertRefused(t, await me(v.s, token), 'ACCESS_TOKEN_EXPIRED')
  t.match((await me(v.s, token)).headers.get('www-authenticate'), /error_description="The access token expired"/)
})

t.test('a token that is not yet valid (nbf in the future) is refused — RFC 7519 §4.1.5', async (t) => {
  const v = await victim(t)
  const now = Math.floor(Date.now() / 1000)
  const token = await sign({ alg: v.alg, kid: v.kid, typ: 'at+jwt' }, fresh(v, { nbf: now + 600, exp: now + 1200 }), v.signingKey)
  assertRefused(t, await me(v.s, token), 'ACCESS_TOKEN_INVALID')
})

t.test('a token signed by an unknown key is refused, whatever kid it names — RFC 8725 §3.10', async (t) => {
  const v = await victim(t)
  const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const attackerKid = 'attacker-key-1'
  assertRefused(t, await me(v.s, await sign({ alg: 'ES256', kid: attackerKid, typ: 'at+jwt' }, fresh(v), attacker.privateKey)), 'ACCESS_TOKEN_INVALID', 'unknown kid')
  assertRefused(t, await me(v.s, await sign({ alg: 'ES256', kid: v.kid, typ: 'at+jwt' }, fresh(v), attacker.privateKey)), 'ACCESS_TOKEN_INVALID', 'real kid, attacker key')
  assertRefused(t, await me(v.s, await sign({ alg: 'ES256', typ: 'at+jwt' }, fresh(v), attacker.privateKey)), 'ACCESS_TOKEN_INVALID', 'no kid')
  // Even a token signed with the real key is refused when its kid is missing or wrong: the
  // kid chooses the key, and only keys of the ring may be chosen.
  assertRefused(t, await me(v.s, await sign({ alg: v.alg, typ: 'at+jwt' }, fresh(v), v.signingKey)), 'ACCESS_TOKEN_INVALID', 'real key, no kid')
  assertRefused(t, await me(v.s, await sign({ alg: v.alg, kid: 'not-a-ring-key', typ: 'at+jwt' }, fresh(v), v.signingKey)), 'ACCESS_TOKEN_INVALID', 'real key, unknown kid')
})

t.test('hostile kid values (path traversal, SQL, huge, prototype names, wrong types) are refused without a server error — RFC 8725 §3.10', async (t) => {
  const v = await victim(t)
  const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const kids: unknown[] = [
    '../../../../../../dev/null',
    '/proc/self/environ',
    '..\\..\\windows\\win.ini',
    'file:///etc/passwd',
    "' OR '1'='1",
    "x' UNION SELECT private_key FROM signing_keys --",
    '"; DROP TABLE signing_keys; --',
    'k'.repeat(8000),
    '\u0000',
    'kid\r\nX-Injected: 1',
    '__proto__',
    'constructor',
    'toString',
    'hasOwnProperty',
    '',
    12345,
    true,
    null,
    ['a', 'b'],
    { $ne: null },
    { toString: 'x' }
  ]
  for (const kid of kids) {
    const a = await me(v.s, signEs256Raw({ alg: 'ES256', kid, typ: 'at+jwt' }, fresh(v), attacker.privateKey))
    assertRefused(t, a, 'ACCESS_TOKEN_INVALID', `kid ${JSON.stringify(kid).slice(0, 40)}`)
  }
  // The signing keys are intact and the service still answers.
  t.equal((await me(v.s, v.accessToken)).status, 200)
  t.equal((await call(v.s, '/.well-known/jwks.json')).json.keys.length >= 1, true)
})

t.test('jku, x5u, jwk and x5c headers pointing at an attacker\'s keys are refused and the attacker\'s server is never contacted — RFC 8725 §3.10, RFC 7515 §4.1.2–4.1.6', async (t) => {
  const v = await victim(t)
  // The attacker's key server, on loopback, counting every request it gets.
  const hits: string[] = []
  const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const attackerJwk = { ...await exportJWK(attacker.publicKey), kid: 'attacker', alg: 'ES256', use: 'sig' }
  const keyServer = createServer((req, res) => {
    hits.push(`${req.method ?? ''} ${req.url ?? ''}`)
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ keys: [attackerJwk] }))
  })
  await new Promise<void>((resolve) => keyServer.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { keyServer.close() })
  const port = (keyServer.address() as { port: number }).port
  const jwksUrl = `http://127.0.0.1:${port}/jwks.json`

  // The key server works: a naive verifier following jku would find the attacker's key there.
  const probe = await fetch(jwksUrl)
  t.equal((await probe.json() as { keys: unknown[] }).keys.length, 1)
  const probeHits = hits.length

  const cases: Array<[string, Record<string, unknown>, KeyObject]> = [
    ['jku → attacker JWKS, attacker kid', { alg: 'ES256', kid: 'attacker', jku: jwksUrl }, attacker.privateKey],
    ['jku → attacker JWKS, real kid', { alg: 'ES256', kid: v.kid, jku: jwksUrl }, attacker.privateKey],
    ['x5u → attacker certificate URL', { alg: 'ES256', kid: 'attacker', x5u: `http://127.0.0.1:${port}/cert.pem` }, attacker.privateKey],
    ['embedded jwk (attacker public key)', { alg: 'ES256', jwk: attackerJwk }, attacker.privateKey],
    ['embedded jwk + real kid', { alg: 'ES256', kid: v.kid, jwk: attackerJwk }, attacker.privateKey],
    ['x5c chain', { alg: 'ES256', kid: 'attacker', x5c: [b64url(Buffer.from('not a certificate'))] }, attacker.privateKey],
    // Signed with the real key: only the header check refuses these, nothing else would.
    ['real key + jku', { alg: v.alg, kid: v.kid, jku: jwksUrl }, v.signingKey],
    ['real key + x5u', { alg: v.alg, kid: v.kid, x5u: `http://127.0.0.1:${port}/cert.pem` }, v.signingKey],
    ['real key + jwk', { alg: v.alg, kid: v.kid, jwk: attackerJwk }, v.signingKey]
  ]
  for (const [name, header, key] of cases) {
    const token = await sign({ ...header, typ: 'at+jwt' }, fresh(v), key)
    assertRefused(t, await me(v.s, token), 'ACCESS_TOKEN_INVALID', name)
  }
  // An extension the service does not understand must not be ignored (RFC 7515 §4.1.11).
  const crit = signEs256Raw({ alg: v.alg, kid: v.kid, typ: 'at+jwt', crit: ['jku'], jku: jwksUrl }, fresh(v), v.signingKey)
  assertRefused(t, await me(v.s, crit), 'ACCESS_TOKEN_INVALID', 'real key + crit')
  // Give a (wrongly) started fetch a moment to arrive before counting.
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.same(hits.slice(probeHits), [], 'the service never contacted the attacker\'s key server')
})

t.test('malformed tokens and Authorization headers are refused with 401, never a server error — RFC 6750 §3.1', async (t) => {
  const v = await victim(t)
  const cases = [
    'Bearer', 'Bearer ', 'Basic dmljdGltOnB3', 'bearer', `Bearer ${v.accessToken} extra`, `Bearer ${v.accessToken}.x`,
    'Bearer a.b.c', 'Bearer ...', 'Bearer e30.e30.', `Bearer ${json64('not an object')}.${json64({})}.x`,
    `Bearer ${b64url('{"alg":')}.${json64({})}.x`, `Bearer ${'A'.repeat(12000)}.${'B'.repeat(100)}.x`,
    `Bearer ${v.accessToken},Bearer ${v.accessToken}`, `Bearer\t${v.accessToken}`
  ]
  for (const authorization of cases) {
    const a = await call(v.s, '/api/auth/me', { headers: { authorization } })
    t.equal(a.status, 401, authorization.slice(0, 40))
    t.ok(['ACCESS_TOKEN_INVALID', 'AUTHORIZATION_REQUIRED'].includes(a.json?.code), `${authorization.slice(0, 40)}: ${String(a.json?.code)}`)
  }
})
