/**
 * Access tokens as src/keys/access-tokens.ts sets them up, through the running app: what the
 * service signs with each algorithm the ring can hold verifies under an independent JOSE
 * library (jose) with the header and claims as signed, ES256 comes out low S only, and the
 * claim rules of verification, driven through GET /me with tokens signed by the service's own
 * key (so each refusal is down to the one claim or header that changed). The attack suites
 * (test/keys/attacks.test.ts, test/security/*) cover forged keys and algorithms; the interop
 * suites (test/interop/*) verify the service's tokens with jose and PyJWT.
 */
import { createPublicKey, createSecretKey } from 'node:crypto'
import { decodeProtectedHeader, jwtVerify } from 'jose'
import t from 'tap'
import { buildTestApp } from '../support/app.js'
import { ALGORITHMS, decode, envFor, forge, me, P256_ORDER, serviceKey, session, HS_SECRET } from './support.js'
import { fakeDate } from '../support/clock.js'

for (const alg of ALGORITHMS) {
  t.test(`${alg}: jose verifies what the service signs, with the header and claims as signed`, async (t) => {
    const app = await buildTestApp(t, envFor(alg, { ACCESS_TOKEN_TTL: '15m' }))
    const { token, payload } = await session(app)
    const { kid, key } = serviceKey(app)
    t.same(decodeProtectedHeader(token), { alg, typ: 'at+jwt', kid })
    const verifyKey = alg === 'HS256' ? createSecretKey(Buffer.from(HS_SECRET, 'utf8')) : createPublicKey(key as Parameters<typeof createPublicKey>[0])
    const verified = await jwtVerify(token, verifyKey, { algorithms: [alg], issuer: String(payload.iss), audience: String(payload.aud), typ: 'at+jwt', requiredClaims: ['sub', 'sid', 'jti', 'iat', 'exp'] })
    t.same(verified.payload, payload)
    t.equal(Number(payload.exp) - Number(payload.iat), 900)
  })
}

t.test('ES256: every token the service signs has the low S (s ≤ n/2), the one spelling verifiers accept', async (t) => {
  const app = await buildTestApp(t, envFor('ES256'))
  await session(app)
  const issue = app.accessTokenIssuer(new Date())
  const subject = { userId: 'u', sessionId: 's', roles: ['user'] }
  // A signature's S is high half the time: 64 low ones in a row do not happen by chance.
  for (let i = 0; i < 64; i++) {
    const { accessToken } = await issue(subject)
    const s = BigInt('0x' + Buffer.from(accessToken.split('.')[2]!, 'base64url').subarray(32).toString('hex'))
    if (s > P256_ORDER / 2n) t.fail(`token ${i} has a high S`)
  }
  t.pass('64 tokens, all low S')
})

t.test('claims: issuer, audience, types, expiry and not-before with the tolerance, typ and headers', async (t) => {
  const app = await buildTestApp(t, envFor('ES256', { JWT_CLOCK_TOLERANCE: '5s' }))
  const clock = fakeDate(t, Date.now(), { running: true })
  const { payload } = await session(app)
  const { kid, alg, key } = serviceKey(app)
  const now = Math.floor(Date.now() / 1000)
  const token = (claims: Record<string, unknown>, header: Record<string, unknown> = {}): string =>
    forge({ alg, typ: 'at+jwt', kid, ...header }, { ...payload, iat: now, exp: now + 60, ...claims }, key)
  const accepted = async (tok: string, name: string): Promise<void> => {
    const res = await me(app, tok)
    t.equal(res.statusCode, 200, `${name}: accepted (${res.body})`)
  }
  const refused = async (tok: string, name: string, code = 'ACCESS_TOKEN_INVALID'): Promise<void> => {
    const res = await me(app, tok)
    t.equal(res.statusCode, 401, `${name}: 401 (${res.body})`)
    t.equal(res.json().code, code, `${name}: ${code}`)
    t.match(res.headers['www-authenticate'], /^Bearer realm="auth", error="invalid_token"/, `${name}: the challenge`)
  }
  await accepted(token({}), 'the control')
  await accepted(token({ aud: ['other', payload.aud] }), 'an audience array holding ours')
  await accepted(token({}, { typ: 'application/AT+JWT' }), 'typ with the media-type prefix, any case')
  await refused(token({ nbf: now + 10 }), 'nbf beyond the tolerance')
  await refused(token({ iss: 'https://other' }), 'another issuer')
  await refused(token({ aud: 'https://other' }), 'another audience')
  await refused(token({ aud: [] }), 'an empty audience array')
  await refused(token({ sid: 42 }), 'a numeric sid')
  await refused(token({ sub: 42 }), 'a numeric sub')
  await refused(token({ jti: 7 }), 'a numeric jti')
  await refused(token({ iat: 'now' }), 'a string iat')
  await refused(token({ exp: '9999999999' }), 'a string exp')
  await refused(token({ jti: undefined }), 'no jti')
  await refused(token({ sid: undefined }), 'no sid')
  await refused(token({}, { typ: 'JWT' }), 'typ JWT')
  await refused(token({}, { typ: undefined }), 'no typ')
  await refused(token({}, { kid: 'k2' }), 'an unknown kid')
  await refused(token({}, { kid: 42 }), 'a numeric kid')
  await refused(token({}, { kid: undefined }), 'no kid')
  await refused(token({ nbf: String(now) }), 'a string nbf')
  await refused(token({ aud: [payload.aud, 42] }), 'an audience array with a non-string')
  const es256 = token({})
  const [, claimsSegment, signatureSegment] = es256.split('.') as [string, string, string]
  const otherAlg = `${Buffer.from(JSON.stringify({ alg: 'RS256', typ: 'at+jwt', kid })).toString('base64url')}.${claimsSegment}`
  await refused(`${otherAlg}.${signatureSegment}`, 'an alg that is not the key’s')
  await refused(forge({ typ: 'at+jwt', kid }, { ...payload, iat: now, exp: now + 60 }, null), 'no alg')
  await refused(token({}, { jku: 'https://evil/jwks' }), 'a jku header')
  await refused(token({}, { x5t: 'abc' }), 'an x5t header')
  await refused(token({}, { crit: ['exp'] }), 'a crit header')
  const good = token({})
  await refused(`${good}.x`, 'four segments')
  await refused(good.slice(0, good.lastIndexOf('.') + 1), 'no signature')
  const [h, p, s] = good.split('.') as [string, string, string]
  await refused(`${h}.${Buffer.from(JSON.stringify({ ...decode(good).payload, sub: 'admin' })).toString('base64url')}.${s}`, 'a changed payload under the old signature')
  await refused(`${h}.${p}.${Buffer.from(s, 'base64url').subarray(0, 63).toString('base64url')}`, 'a truncated signature')
  await refused(`${h}.${p}.${Buffer.concat([Buffer.from(s, 'base64url'), Buffer.from([0])]).toString('base64url')}`, 'a signature one byte too long')
  // Expiry, with the tolerance (5 s): the clock is set to a second, not moved by a step, so the
  // time the requests above took does not count. 2 s after exp still in, 8 s after out.
  const setClock = (seconds: number): void => { clock.advance(seconds * 1000 - Date.now()) }
  setClock(now + 62)
  await accepted(good, 'within the tolerance after exp')
  setClock(now + 68)
  await refused(good, 'past exp plus tolerance', 'ACCESS_TOKEN_EXPIRED')
  await refused(good.replace(/\.[^.]+$/, '.AAAA'), 'an expired token with a bad signature is invalid, not expired')
})
