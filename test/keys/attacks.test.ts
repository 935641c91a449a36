/**
 * The attack list of issue 3, each a separate test, for every algorithm the service signs
 * with, through a real Bearer route (GET /api/auth/me). Tokens that carry a wrong claim are
 * signed with the service's real key, so the only reason to refuse them is the claim.
 */
import { createPublicKey, type KeyObject } from 'node:crypto'
import t from 'tap'
import { buildTestApp, login, register } from '../support/app.js'
import {
  ALGORITHMS, assertRefused, attackerKey, ASYMMETRIC, decode, envFor, forge, highSTwin, me, P256_ORDER, serviceKey, session
} from './support.js'

/** Every way the public key could be fed to an HMAC by a confused verifier. */
function publicKeyEncodings (publicKey: KeyObject, jwk: Record<string, unknown>): Array<[string, string | Buffer]> {
  const pem = publicKey.export({ format: 'pem', type: 'spki' }) as string
  const der = publicKey.export({ format: 'der', type: 'spki' })
  const out: Array<[string, string | Buffer]> = [
    ['SPKI PEM', pem],
    ['SPKI PEM without the final newline', pem.trimEnd()],
    ['SPKI PEM with CRLF line ends', pem.replace(/\n/g, '\r\n')],
    ['SPKI DER bytes', der],
    ['SPKI DER as base64', der.toString('base64')],
    ['SPKI DER as base64url', der.toString('base64url')],
    ['JWK JSON as served in the JWKS', JSON.stringify(jwk)],
    ['JWK JSON of the public members only', JSON.stringify(Object.fromEntries(Object.entries(jwk).filter(([k]) => !['kid', 'alg', 'use'].includes(k))))],
    ['the kid', String(jwk.kid)]
  ]
  const raw = (name: string): Buffer => Buffer.from(String(jwk[name]), 'base64url')
  if (jwk.kty === 'RSA') {
    out.push(['PKCS#1 PEM', publicKey.export({ format: 'pem', type: 'pkcs1' }) as string])
    out.push(['PKCS#1 DER bytes', publicKey.export({ format: 'der', type: 'pkcs1' })])
    out.push(['raw n bytes', raw('n')], ['n as base64url', String(jwk.n)], ['e as base64url', String(jwk.e)])
  }
  if (jwk.kty === 'EC') {
    const x = raw('x')
    const y = raw('y')
    out.push(['raw x bytes', x], ['raw y bytes', y], ['raw x||y', Buffer.concat([x, y])])
    out.push(['uncompressed point 04||x||y', Buffer.concat([Buffer.from([4]), x, y])])
    out.push(['compressed point', Buffer.concat([Buffer.from([2 + (y[y.length - 1]! & 1)]), x])])
    out.push(['x as base64url', String(jwk.x)], ['y as base64url', String(jwk.y)])
  }
  if (jwk.kty === 'OKP') out.push(['raw x bytes', raw('x')], ['x as base64url', String(jwk.x)])
  return out
}

for (const alg of ALGORITHMS) {
  t.test(`${alg}: forged and misdirected tokens are refused on a Bearer route`, async (t) => {
    const app = await buildTestApp(t, envFor(alg))
    const genuine = await session(app)
    const real = serviceKey(app)
    const now = Math.floor(Date.now() / 1000)
    /** The genuine token's header and claims with changes, signed with the service's own key. */
    const resigned = (header: Record<string, unknown>, payload: Record<string, unknown> = {}): string =>
      forge({ ...genuine.header, ...header }, { ...genuine.payload, ...payload }, real.key)
    const jwks = (await app.inject({ url: '/.well-known/jwks.json' })).json().keys as Array<Record<string, unknown>>

    t.test('control: the genuine token and a faithful re-signing of it are accepted', async (t) => {
      t.equal((await me(app, genuine.token)).statusCode, 200)
      t.equal((await me(app, resigned({}))).statusCode, 200)
      t.equal(genuine.header.alg, alg)
      t.equal(genuine.header.typ, 'at+jwt')
      t.equal(genuine.header.kid, real.kid)
    })

    t.test('alg none is refused', async (t) => {
      for (const none of ['none', 'None', 'NONE', 'nOnE']) {
        const header = { ...genuine.header, alg: none }
        assertRefused(t, await me(app, forge(header, genuine.payload, null)))
        // The same, keeping the genuine signature.
        const [, , sig] = genuine.token.split('.')
        assertRefused(t, await me(app, forge(header, genuine.payload, null) + sig))
      }
    })

    if (alg !== 'HS256') {
      const jwk = jwks.find((k) => k.kid === real.kid)!
      const publicKey = createPublicKey(real.key as KeyObject)
      for (const [encoding, secret] of publicKeyEncodings(publicKey, jwk)) {
        t.test(`algorithm confusion: HS256 signed with the public key as ${encoding} is refused`, async (t) => {
          assertRefused(t, await me(app, forge({ ...genuine.header, alg: 'HS256' }, genuine.payload, secret)))
        })
      }
      t.test('algorithm confusion: HS384/HS512 signed with the public key are refused', async (t) => {
        const pem = publicKey.export({ format: 'pem', type: 'spki' }) as string
        for (const hs of ['HS384', 'HS512']) assertRefused(t, await me(app, forge({ ...genuine.header, alg: hs }, genuine.payload, pem)))
      })
      t.test('another asymmetric algorithm under our kid, signed by an attacker key, is refused', async (t) => {
        for (const other of ASYMMETRIC.filter((a) => a !== alg)) {
          assertRefused(t, await me(app, forge({ ...genuine.header, alg: other }, genuine.payload, attackerKey(other))))
        }
      })
    } else {
      t.test('algorithm confusion: asymmetric tokens under the HS256 kid, signed by an attacker key, are refused', async (t) => {
        for (const other of ASYMMETRIC) {
          assertRefused(t, await me(app, forge({ ...genuine.header, alg: other }, genuine.payload, attackerKey(other))))
        }
      })
      t.test('algorithm confusion: HS256 signed with the kid or an empty secret is refused', async (t) => {
        assertRefused(t, await me(app, forge(genuine.header, genuine.payload, String(real.kid))))
        assertRefused(t, await me(app, forge(genuine.header, genuine.payload, Buffer.alloc(0))))
      })
    }

    t.test('a key of the right type but not ours is refused, whatever kid it names', async (t) => {
      const mine = alg === 'HS256' ? 'another secret of at least thirty-two bytes!' : attackerKey(alg)
      for (const kid of [real.kid, 'attacker-key', undefined]) {
        assertRefused(t, await me(app, forge({ ...genuine.header, kid }, genuine.payload, mine)))
      }
    })

    t.test('an unknown kid is refused, even on a token signed with the real key', async (t) => {
      assertRefused(t, await me(app, resigned({ kid: 'no-such-key' })))
      assertRefused(t, await me(app, resigned({ kid: real.kid + 'x' })))
    })

    t.test('a token without kid is refused, even signed with the real key', async (t) => {
      assertRefused(t, await me(app, resigned({ kid: undefined })))
    })

    for (const name of ['jku', 'x5u', 'jwk', 'x5c'] as const) {
      t.test(`a ${name} header is refused, with the real key or an attacker's`, async (t) => {
        const attacker = attackerKey(alg === 'HS256' ? 'ES256' : alg)
        const attackerJwk = { ...createPublicKey(attacker).export({ format: 'jwk' }), kid: 'attacker' }
        const value = {
          jku: 'https://attacker.example/jwks.json',
          x5u: 'https://attacker.example/cert.pem',
          jwk: attackerJwk,
          x5c: ['MIIBszCCAVmgAwIBAgIUDeadBeef']
        }[name]
        // Real key: nothing wrong but the header itself.
        assertRefused(t, await me(app, resigned({ [name]: value })))
        // Attacker key, pointed at by the header (the attack the header enables).
        const attackerAlg = alg === 'HS256' ? 'ES256' : alg
        assertRefused(t, await me(app, forge({ ...genuine.header, alg: attackerAlg, kid: 'attacker', [name]: value }, genuine.payload, attacker)))
      })
    }

    t.test('a crit header is refused', async (t) => {
      assertRefused(t, await me(app, resigned({ crit: ['exp'] })))
      assertRefused(t, await me(app, resigned({ crit: ['urn:example:ext'], 'urn:example:ext': true })))
    })

    t.test('a token of another typ is refused', async (t) => {
      for (const typ of ['JWT', 'jwt', 'id+jwt', 'application/jwt', 'at+jwt2', undefined]) {
        assertRefused(t, await me(app, resigned({ typ })))
      }
      // RFC 9068 allows the media type form; it is the same type.
      t.equal((await me(app, resigned({ typ: 'application/at+jwt' }))).statusCode, 200)
    })

    t.test('a wrong or missing issuer is refused', async (t) => {
      for (const iss of ['https://attacker.example', 'http://localhost:3000/', 'http://LOCALHOST:3000', undefined]) {
        assertRefused(t, await me(app, resigned({}, { iss })))
      }
    })

    t.test('a wrong or missing audience is refused', async (t) => {
      for (const aud of ['https://other-service.example', ['https://other-service.example'], 'http://localhost:3000/', undefined]) {
        assertRefused(t, await me(app, resigned({}, { aud })))
      }
    })

    t.test('an expired token is refused as expired; within the clock tolerance it is accepted', async (t) => {
      assertRefused(t, await me(app, resigned({}, { exp: now - 60 })), 'ACCESS_TOKEN_EXPIRED')
      t.match((await me(app, resigned({}, { exp: now - 60 }))).headers['www-authenticate'], /error_description="The access token expired"/)
      t.equal((await me(app, resigned({}, { exp: now - 2 }))).statusCode, 200, 'JWT_CLOCK_TOLERANCE is 5 s')
      // Expired and forged: the signature is checked first, so it is invalid, not expired.
      const forged = forge({ ...genuine.header }, { ...genuine.payload, exp: now - 60 }, alg === 'HS256' ? 'x'.repeat(40) : attackerKey(alg))
      assertRefused(t, await me(app, forged), 'ACCESS_TOKEN_INVALID')
    })

    t.test('a token missing a required claim is refused', async (t) => {
      for (const claim of ['exp', 'sub', 'sid', 'jti', 'iat']) {
        assertRefused(t, await me(app, resigned({}, { [claim]: undefined })))
      }
    })

    t.test('a changed claim under the genuine signature is refused', async (t) => {
      const [h, , s] = genuine.token.split('.')
      const payload = Buffer.from(JSON.stringify({ ...genuine.payload, roles: ['admin'] })).toString('base64url')
      assertRefused(t, await me(app, `${h}.${payload}.${s}`))
    })

    t.test('malformed Bearer values are refused with the same answer', async (t) => {
      for (const authorization of ['Bearer', 'Bearer abc', 'Bearer a.b', `Bearer ${genuine.token}.x`, `Basic ${genuine.token}`]) {
        const res = await app.inject({ url: '/api/auth/me', headers: { authorization } })
        assertRefused(t, res)
      }
      const none = await app.inject({ url: '/api/auth/me' })
      t.equal(none.statusCode, 401)
      t.equal(none.json().code, 'AUTHORIZATION_REQUIRED')
      t.equal(none.headers['www-authenticate'], 'Bearer realm="auth"')
    })

    t.test('the decoded genuine token carries exactly the contract claims', async (t) => {
      t.same(Object.keys(decode(genuine.token).payload).sort(), ['amr', 'aud', 'auth_time', 'exp', 'iat', 'iss', 'jti', 'roles', 'sid', 'sub'])
    })
  })
}

t.test('ES256: one token string, one signature: the high-S twin of a genuine signature is refused', async (t) => {
  const app = await buildTestApp(t, envFor('ES256'))
  await register(app)
  // Several tokens, so that both halves of s are met whatever the service would draw.
  for (let i = 0; i < 8; i++) {
    const { accessToken } = await login(app)
    const s = BigInt('0x' + Buffer.from(accessToken.split('.')[2]!, 'base64url').subarray(32).toString('hex'))
    t.ok(s <= P256_ORDER / 2n, `token ${i}: the service signs with the low s`)
    t.equal((await me(app, accessToken)).statusCode, 200, `token ${i}: accepted`)
    // (r, n − s) is a mathematically valid signature of the same token: a second spelling.
    assertRefused(t, await me(app, highSTwin(accessToken)))
  }
})
