/**
 * The access-token signer (src/keys/token-signer.ts), below the routes: every algorithm the
 * ring can hold signs tokens that an independent JOSE library (jose) verifies, and the ES256
 * DER-to-JWS conversion holds on the signature shapes random signatures only rarely produce.
 * The interop suites (test/interop/*) verify tokens from the running service with jose and PyJWT.
 */
import { createSecretKey, generateKeyPairSync, sign } from 'node:crypto'
import { compactVerify, decodeProtectedHeader, jwtVerify } from 'jose'
import t from 'tap'
import { createTokenSigner, derToJose } from '../../src/keys/token-signer.js'
import type { Algorithm } from '../../src/keys/signing-key.js'

const claims = { iss: 'https://auth', aud: 'https://api', sub: 'u1', sid: 's1', jti: 'j1', roles: ['user'], iat: 1_800_000_000, exp: 1_800_000_900 }
const pairs: Record<Exclude<Algorithm, 'HS256'>, ReturnType<typeof generateKeyPairSync>> = {
  ES256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  RS256: generateKeyPairSync('rsa', { modulusLength: 2048 }),
  EdDSA: generateKeyPairSync('ed25519')
}

for (const alg of ['ES256', 'RS256', 'EdDSA'] as const) {
  t.test(`${alg}: jose verifies the token, with the header and claims as signed`, async (t) => {
    const { privateKey, publicKey } = pairs[alg]
    const token = await createTokenSigner({ kid: `kid-${alg}`, alg, signKeyObject: privateKey })(claims)
    t.same(decodeProtectedHeader(token), { alg, typ: 'at+jwt', kid: `kid-${alg}` })
    const { payload } = await jwtVerify(token, publicKey, { algorithms: [alg], issuer: 'https://auth', audience: 'https://api', typ: 'at+jwt', currentDate: new Date(1_800_000_100_000) })
    t.same(payload, claims)
    const forged = token.slice(0, token.lastIndexOf('.') + 1) + Buffer.alloc(alg === 'RS256' ? 256 : 64, 1).toString('base64url')
    await t.rejects(compactVerify(forged, publicKey), 'another signature does not verify')
  })
}

t.test('HS256: an HMAC jose verifies with the secret', async (t) => {
  const secret = createSecretKey(Buffer.from('a-secret-of-at-least-thirty-two-bytes!!', 'utf8'))
  const token = await createTokenSigner({ kid: 'hs', alg: 'HS256', signKeyObject: secret })(claims)
  const { payload } = await jwtVerify(token, secret, { algorithms: ['HS256'], currentDate: new Date(1_800_000_100_000) })
  t.same(payload, claims)
})

t.test('ES256: DER integers with a leading zero byte, fewer than 32 bytes, or the high bit set all become r ‖ s', async (t) => {
  const { privateKey, publicKey } = pairs.ES256
  const seen = { shortR: false, shortS: false, paddedR: false, paddedS: false }
  const signer = createTokenSigner({ kid: 'k', alg: 'ES256', signKeyObject: privateKey })
  for (let i = 0; i < 3000 && !Object.values(seen).every(Boolean); i++) {
    const token = await signer({ ...claims, jti: `j${i}` })
    const input = token.slice(0, token.lastIndexOf('.'))
    const der = sign('sha256', Buffer.from(input), privateKey)
    const rLength = der[3]!
    const sLength = der[4 + rLength + 1]!
    const kinds = [rLength < 32 && 'shortR', sLength < 32 && 'shortS', rLength === 33 && 'paddedR', sLength === 33 && 'paddedS'].filter((k): k is keyof typeof seen => k !== false)
    if (kinds.length === 0 || kinds.every((k) => seen[k])) continue
    // The token's own signature (a different random k) and this DER one, converted, both verify.
    await compactVerify(token, publicKey)
    const converted = derToJose(der)
    t.equal(converted.length, 64)
    await compactVerify(`${input}.${converted.toString('base64url')}`, publicKey)
    t.pass(`${kinds.join('+')} (signature ${i})`)
    for (const k of kinds) seen[k] = true
  }
  t.same(seen, { shortR: true, shortS: true, paddedR: true, paddedS: true }, 'every shape met')
  t.throws(() => derToJose(Buffer.from([0x31, 0x00])), 'not a DER sequence')
  t.throws(() => derToJose(Buffer.concat([Buffer.from([0x30, 0x25, 0x02, 0x21]), Buffer.alloc(33, 0x7f), Buffer.from([0x02, 0x00])])), 'an integer longer than 32 bytes')
})
