/**
 * The service's own access-token verifier (src/keys/token-verifier.ts), below the routes: the
 * ES256 signature conversion on the edge cases random signatures only rarely hit, and the
 * claim rules. The attack suites (test/keys/attacks.test.ts, test/security/*) drive it
 * through the routes.
 */
import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto'
import t from 'tap'
import { createTokenVerifier, joseToDer, TokenRejected } from '../../src/keys/token-verifier.js'
import { lowS } from './support.js'

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })

t.test('joseToDer: r and s with leading zero bytes and with the high bit set verify as DER', async (t) => {
  const seen = { zeroR: false, zeroS: false, highR: false, highS: false, plain: false }
  for (let i = 0; i < 5000 && !Object.values(seen).every(Boolean); i++) {
    const data = Buffer.from(`message ${i}`)
    const jose = sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' })
    const [r, s] = [jose[0]!, jose[32]!]
    const kinds = [r === 0 && 'zeroR', s === 0 && 'zeroS', r >= 0x80 && 'highR', s >= 0x80 && 'highS', r > 0 && r < 0x80 && s > 0 && s < 0x80 && 'plain'].filter((k): k is keyof typeof seen => k !== false)
    if (kinds.every((k) => seen[k])) continue
    t.ok(verify('sha256', data, publicKey, joseToDer(jose)), `${kinds.join('+')} (signature ${i})`)
    for (const k of kinds) seen[k] = true
  }
  t.same(seen, { zeroR: true, zeroS: true, highR: true, highS: true, plain: true }, 'every shape met')
  t.throws(() => joseToDer(Buffer.alloc(63)), TokenRejected, 'a short signature is refused')
  t.throws(() => joseToDer(Buffer.alloc(65)), TokenRejected, 'a long signature is refused')
})

t.test('claims: issuer, audience, types, expiry and not-before, with the tolerance', async (t) => {
  const key = { kid: 'k1', alg: 'ES256' as const, verifyKeyObject: createPublicKey(privateKey) }
  const check = createTokenVerifier({ issuer: 'https://auth', audience: 'https://api', clockToleranceSeconds: 5, algorithms: ['ES256'] }, (kid) => kid === 'k1' ? key : undefined)
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')
  const now = 1_800_000_000
  const token = (claims: Record<string, unknown>, header: Record<string, unknown> = {}): string => {
    const input = `${b64({ alg: 'ES256', typ: 'at+jwt', kid: 'k1', ...header })}.${b64({ iss: 'https://auth', aud: 'https://api', sub: 'u', sid: 's', jti: 'j', iat: now, exp: now + 60, ...claims })}`
    return `${input}.${lowS(sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' })).toString('base64url')}`
  }
  const at = (s: number): number => s * 1000
  t.match(await check(token({}), at(now)), { sub: 'u', sid: 's' })
  t.match(await check(token({ aud: ['other', 'https://api'] }), at(now)), { sub: 'u' }, 'an audience array holding ours')
  t.match(await check(token({}, { typ: 'application/AT+JWT' }), at(now)), { sub: 'u' }, 'typ with the media-type prefix, any case')
  t.match(await check(token({}), at(now + 64)), { sub: 'u' }, 'within the tolerance after exp')
  const refused = async (tok: string, reason: 'expired' | 'invalid', name: string, when = now): Promise<void> => {
    await t.rejects(check(tok, at(when)), { name: 'TokenRejected', reason }, name)
  }
  await refused(token({}), 'expired', 'past exp plus tolerance', now + 66)
  await refused(token({ nbf: now + 10 }), 'invalid', 'nbf beyond the tolerance')
  await refused(token({ iss: 'https://other' }), 'invalid', 'another issuer')
  await refused(token({ aud: 'https://other' }), 'invalid', 'another audience')
  await refused(token({ aud: [] }), 'invalid', 'an empty audience array')
  await refused(token({ sid: 42 }), 'invalid', 'a numeric sid')
  await refused(token({ exp: '9999999999' }), 'invalid', 'a string exp')
  await refused(token({ jti: undefined }), 'invalid', 'no jti')
  await refused(token({}, { typ: 'JWT' }), 'invalid', 'typ JWT')
  await refused(token({}, { kid: 'k2' }), 'invalid', 'an unknown kid')
  await refused(token({}, { alg: 'RS256' }), 'invalid', 'an alg that is not the key’s')
  await refused(token({}, { jku: 'https://evil/jwks' }), 'invalid', 'a jku header')
  await refused(token({}, { crit: ['exp'] }), 'invalid', 'a crit header')
  const good = token({})
  await refused(`${good}.x`, 'invalid', 'four segments')
  await refused(good.slice(0, good.lastIndexOf('.') + 1), 'invalid', 'no signature')
  const [h, p, s] = good.split('.') as [string, string, string]
  await refused(`${h}.${b64({ iss: 'https://auth', aud: 'https://api', sub: 'admin', sid: 's', jti: 'j', iat: now, exp: now + 60 })}.${s}`, 'invalid', 'a changed payload under the old signature')
  await refused(`${h}.${p}.${Buffer.from(s, 'base64url').subarray(0, 63).toString('base64url')}`, 'invalid', 'a truncated signature')
  await refused(token({ exp: now - 3600 }).replace(/\.[^.]+$/, '.AAAA'), 'invalid', 'an expired token with a bad signature is invalid, not expired')
})
