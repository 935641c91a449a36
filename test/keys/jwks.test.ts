/**
 * GET /.well-known/jwks.json and /.well-known/openid-configuration: caching headers, ETag
 * revalidation, and never a private member, for every algorithm and after rotations.
 */
import t from 'tap'
import { buildTestApp } from '../support/app.js'
import { ALGORITHMS, ASYMMETRIC, envFor } from './support.js'

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth', 'r', 't']

/** Every member name anywhere in the document, however deep. */
function memberNames (value: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(value)) for (const v of value) memberNames(v, out)
  else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) { out.add(k); memberNames(v, out) }
  }
  return out
}

const PUBLIC_MEMBERS: Record<string, string[]> = {
  EC: ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y'],
  RSA: ['alg', 'e', 'kid', 'kty', 'n', 'use'],
  OKP: ['alg', 'crv', 'kid', 'kty', 'use', 'x']
}

for (const alg of ALGORITHMS) {
  t.test(`${alg}: the JWKS serves public members only, also after rotations`, async (t) => {
    const app = await buildTestApp(t, envFor(alg))
    const check = async (label: string): Promise<Array<Record<string, unknown>>> => {
      const res = await app.inject({ url: '/.well-known/jwks.json' })
      t.equal(res.statusCode, 200)
      for (const m of PRIVATE_MEMBERS) t.notOk(memberNames(res.json()).has(m), `${label}: no "${m}" member`)
      t.notMatch(res.body, /PRIVATE|BEGIN|enc:v1/, `${label}: no key material in any other form`)
      const keys = res.json().keys as Array<Record<string, unknown>>
      for (const k of keys) t.same(Object.keys(k).sort(), PUBLIC_MEMBERS[String(k.kty)], `${label}: ${String(k.kty)} key has exactly its public members`)
      return keys
    }
    const first = await check('at boot')
    if (alg === 'HS256') {
      t.same(first, [], 'the HS256 secret is never published, in any form')
      t.notMatch((await app.inject({ url: '/.well-known/jwks.json' })).body, /oct|"k"/)
      return
    }
    t.equal(first.length, 1)
    t.equal(first[0]!.alg, alg)
    t.equal(first[0]!.use, 'sig')
    const start = new Date()
    await app.keyRing.rotate(start)
    t.equal((await check('with a next key')).length, 2)
    await app.keyRing.rotate(start, true)
    const after = await check('after an immediate rotation')
    t.equal(after.length, 2, 'the next key was replaced; the old current key is retired but still published')
  })
}

t.test('JWKS caching: Cache-Control, ETag and 304', async (t) => {
  const app = await buildTestApp(t, { JWKS_MAX_AGE: '15m' })
  const res = await app.inject({ url: '/.well-known/jwks.json' })
  t.equal(res.headers['cache-control'], 'public, max-age=900')
  t.match(res.headers['content-type'], /^application\/json/)
  const etag = res.headers.etag as string
  t.match(etag, /^"[A-Za-z0-9_-]+"$/, 'a strong entity tag')

  for (const inm of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
    const again = await app.inject({ url: '/.well-known/jwks.json', headers: { 'if-none-match': inm } })
    t.equal(again.statusCode, 304, `If-None-Match: ${inm}`)
    t.equal(again.body, '')
    t.notOk(again.headers['content-type'], 'no Content-Type for the body that is not there')
    t.equal(again.headers.etag, etag)
    t.equal(again.headers['cache-control'], 'public, max-age=900')
  }
  const stale = await app.inject({ url: '/.well-known/jwks.json', headers: { 'if-none-match': '"not-it"' } })
  t.equal(stale.statusCode, 200)
  t.same(stale.json(), res.json())

  // A change of the ring changes the tag: the old one no longer revalidates.
  await app.keyRing.rotate(new Date())
  const changed = await app.inject({ url: '/.well-known/jwks.json', headers: { 'if-none-match': etag } })
  t.equal(changed.statusCode, 200)
  t.not(changed.headers.etag, etag)
  t.equal(changed.json().keys.length, 2)

  const head = await app.inject({ method: 'HEAD', url: '/.well-known/jwks.json' })
  t.equal(head.statusCode, 200)
  t.equal(head.headers.etag, changed.headers.etag)
})

t.test('openid-configuration names the issuer, the JWKS, the refresh endpoint and the algorithms', async (t) => {
  const app = await buildTestApp(t, { PUBLIC_URL: 'https://auth.example.com', JWT_ISSUER: 'https://issuer.example.com' })
  const res = await app.inject({ url: '/.well-known/openid-configuration' })
  t.equal(res.statusCode, 200)
  t.match(res.json(), {
    issuer: 'https://issuer.example.com',
    jwks_uri: 'https://auth.example.com/.well-known/jwks.json',
    token_endpoint: 'https://auth.example.com/api/auth/refresh',
    access_token_signing_alg_values_supported: ['ES256'],
    id_token_signing_alg_values_supported: ['ES256']
  })
  t.match(res.headers['cache-control'], /^public, max-age=\d+$/)
})

for (const alg of ASYMMETRIC) {
  t.test(`openid-configuration lists ${alg}`, async (t) => {
    const app = await buildTestApp(t, envFor(alg))
    t.same((await app.inject({ url: '/.well-known/openid-configuration' })).json().access_token_signing_alg_values_supported, [alg])
  })
}
