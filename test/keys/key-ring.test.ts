/**
 * The key ring on a real SQLite database, with time passed in (`maintain(now)`), so a month of
 * rotations takes milliseconds: states, the schedule and its lead time, retirement and removal,
 * restarts, two instances on one file, a change of algorithm, sealing at rest.
 */
import { createHash, createPublicKey } from 'node:crypto'
import { join } from 'node:path'
import t from 'tap'
import { openDatabase } from '../../db/client.js'
import { runMigrations } from '../../db/migrate.js'
import { createSigningKeysRepository, type SigningKeysRepository } from '../../db/repositories/signing-keys.js'
import { createKeyRing, type KeyRingOptions } from '../../src/keys/key-ring.js'
import { KeyProtectionError, publicJwkOf } from '../../src/keys/signing-key.js'
import type { Test } from 'tap'

const HOUR = 3600_000
const DAY = 24 * HOUR
const T0 = new Date('2030-01-01T00:00:00Z')
const at = (ms: number): Date => new Date(T0.getTime() + ms)

const BASE: KeyRingOptions = {
  algorithm: 'ES256',
  rotationIntervalSeconds: 30 * 86400,
  jwksMaxAgeSeconds: 3600,
  accessTokenTtlSeconds: 900,
  clockToleranceSeconds: 5,
  checkIntervalSeconds: 300,
  rsaModulusLength: 2048
}
const LEAD = (3600 + 300) * 1000
const RETIREMENT = (900 + 5 + 300) * 1000
const KEK = Buffer.alloc(32, 7)

interface Opened { repo: SigningKeysRepository, sqlite: ReturnType<typeof openDatabase>['sqlite'] }

function openRepo (t: Test, path = ':memory:'): Opened {
  const { db, sqlite } = openDatabase({ path })
  runMigrations(db)
  t.teardown(() => { sqlite.close() })
  return { repo: createSigningKeysRepository(db), sqlite }
}

function ring (repo: SigningKeysRepository, options: Partial<KeyRingOptions> = {}) {
  return createKeyRing(repo, { ...BASE, ...options })
}

const published = (r: ReturnType<typeof ring>): string[] => (JSON.parse(r.jwks().body).keys as Array<{ kid: string }>).map((k) => k.kid)

t.test('the first maintain creates one current key whose kid is its RFC 7638 thumbprint', async (t) => {
  for (const alg of ['ES256', 'RS256', 'EdDSA'] as const) {
    const { repo } = openRepo(t)
    const r = ring(repo, { algorithm: alg })
    const events = await r.maintain(T0)
    t.same(events.map((e) => e.type), ['created', 'activated'], `${alg}: created and signing at once on an empty database`)
    const rows = await repo.list()
    t.equal(rows.length, 1)
    t.equal(rows[0]!.state, 'current')
    const key = r.signingKey(T0)
    t.equal(key.alg, alg)
    // RFC 7638 §3.2: the required members only, in lexicographic order, no whitespace.
    const jwk = key.jwk!
    const members = { EC: ['crv', 'kty', 'x', 'y'], RSA: ['e', 'kty', 'n'], OKP: ['crv', 'kty', 'x'] }[String(jwk.kty)]!
    const canonical = JSON.stringify(Object.fromEntries(members.map((m) => [m, (jwk as unknown as Record<string, unknown>)[m]])))
    t.equal(key.kid, createHash('sha256').update(canonical).digest('base64url'), `${alg}: kid = base64url(SHA-256(${canonical.slice(0, 20)}...))`)
  }
})

t.test('kid matches the RFC 7638 §3.1 example', async (t) => {
  const example = {
    kty: 'RSA',
    n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
    e: 'AQAB'
  }
  const jwk = await publicJwkOf(createPublicKey({ key: example, format: 'jwk' }), 'RS256')
  t.equal(jwk.kid, 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs')
})

t.test('a scheduled rotation: published one lead time ahead, then signing, then retired, then removed', async (t) => {
  const { repo } = openRepo(t)
  const r = ring(repo)
  await r.maintain(T0)
  const k1 = r.signingKey(T0).kid
  const interval = 30 * DAY

  t.same(await r.maintain(at(interval - LEAD - 1000)), [], 'not due yet: nothing happens')
  t.equal((await repo.list()).length, 1)

  const created = await r.maintain(at(interval - LEAD))
  t.same(created.map((e) => e.type), ['created'])
  const k2 = created[0]!.kid
  t.same(created[0]!.activatesAt, at(interval), 'starts signing exactly when the interval is up')
  t.same(published(r), [k1, k2], 'the next key is in the JWKS from the moment it exists')
  t.equal((await repo.list()).find((row) => row.kid === k2)!.state, 'next')
  t.equal(r.signingKey(at(interval - 1)).kid, k1, 'the old key signs until the switch')
  t.equal(r.signingKey(at(interval)).kid, k2, 'every instance switches at the same moment, before any rewrite of states')
  t.same(await r.maintain(at(interval - LEAD + 60_000)), [], 'maintain is idempotent: no second next key')

  const switched = await r.maintain(at(interval + 1000))
  t.same(switched.map((e) => [e.type, e.kid]), [['activated', k2], ['retired', k1]])
  const old = (await repo.list()).find((row) => row.kid === k1)!
  t.equal(old.state, 'retired')
  t.same(old.retiredAt, at(interval), 'retired from the moment it stopped signing')
  t.same(old.removeAfter, at(interval + RETIREMENT), 'kept for the token lifetime + clock tolerance + one check interval')
  t.same(published(r), [k1, k2], 'a retired key is still published')
  t.ok(r.verificationKey(k1), 'and still verifies')

  t.same(await r.maintain(at(interval + RETIREMENT - 1)), [])
  const removed = await r.maintain(at(interval + RETIREMENT))
  t.same(removed.map((e) => [e.type, e.kid]), [['removed', k1]])
  t.same(published(r), [k2])
  t.equal(r.verificationKey(k1), undefined)
})

t.test('a rotation overdue after downtime still publishes the key one lead time before it signs', async (t) => {
  const { repo } = openRepo(t)
  const r = ring(repo)
  await r.maintain(T0)
  const late = at(90 * DAY)
  const events = await r.maintain(late)
  t.same(events.map((e) => e.type), ['created'])
  t.same(events[0]!.activatesAt, new Date(late.getTime() + LEAD))
  t.equal(r.signingKey(late).kid, r.keys[0]!.kid, 'the old key keeps signing meanwhile')
})

t.test('the ring survives a restart on the same database file', async (t) => {
  const path = join(t.testdir(), 'auth.db')
  const first = openRepo(t, path)
  const a = ring(first.repo)
  await a.maintain(T0)
  const kid = a.signingKey(T0).kid
  first.sqlite.close()

  const second = openRepo(t, path)
  const b = ring(second.repo)
  t.same(await b.maintain(at(HOUR)), [], 'nothing to do after a restart')
  t.equal(b.signingKey(at(HOUR)).kid, kid)
  t.equal(b.jwks().body, a.jwks().body)
  t.equal(b.jwks().etag, a.jwks().etag, 'instances serving the same ring send the same ETag')
})

t.test('two instances sharing one database file never rotate twice', async (t) => {
  const path = join(t.testdir(), 'auth.db')
  const a = ring(openRepo(t, path).repo)
  const b = ring(openRepo(t, path).repo)
  // First start of both at the same moment.
  const [ea, eb] = await Promise.all([a.maintain(T0), b.maintain(T0)])
  t.equal([...ea, ...eb].filter((e) => e.type === 'created').length, 1, 'one first key')
  const due = at(30 * DAY - LEAD)
  for (const mode of ['auto', 'scheduled'] as const) {
    const [ra, rb] = await Promise.all([a.maintain(due, mode), b.maintain(due, mode)])
    t.equal([...ra, ...rb].filter((e) => e.type === 'created').length, mode === 'auto' ? 1 : 0, `${mode}: at most one next key`)
  }
  await Promise.all([a.reload(), b.reload()])
  t.equal(a.keys.length, 2)
  t.equal(a.jwks().body, b.jwks().body)
  const switchAt = at(30 * DAY)
  const [sa, sb] = await Promise.all([a.maintain(switchAt), b.maintain(switchAt)])
  t.equal([...sa, ...sb].filter((e) => e.type === 'retired').length, 1, 'the old key is retired once')
  t.equal(a.signingKey(switchAt).kid, b.signingKey(switchAt).kid)
})

t.test('an instance learns of an immediate rotation made elsewhere when it meets the new kid', async (t) => {
  const path = join(t.testdir(), 'auth.db')
  const a = ring(openRepo(t, path).repo)
  let lists = 0
  const repoB = openRepo(t, path).repo
  const counted: SigningKeysRepository = { ...repoB, list: async () => { lists++; return await repoB.list() } }
  const b = ring(counted, { unknownKidReloadSeconds: 10 })
  await a.maintain(T0)
  await b.maintain(T0)
  const events = await a.rotate(T0, true)
  const fresh = events.find((e) => e.type === 'created')!.kid
  t.equal(b.verificationKey(fresh), undefined, 'not known before a reload')
  const before = lists
  t.equal((await b.findVerificationKey(fresh))?.kid, fresh, 'an unknown kid rereads the ring')
  t.equal(lists, before + 1)
  t.equal(await b.findVerificationKey('forged-kid'), undefined)
  t.equal(lists, before + 1, 'within the cooldown another unknown kid does not reach the database')
})

t.test('an immediate rotation replaces the signing key at once and drops a scheduled one', async (t) => {
  const { repo } = openRepo(t)
  const r = ring(repo)
  await r.maintain(T0)
  const k1 = r.signingKey(T0).kid
  const scheduled = (await r.rotate(at(HOUR))).find((e) => e.type === 'created')!
  t.same(scheduled.activatesAt, at(HOUR + LEAD), 'rotate without --immediate: signs after the lead time')
  t.same(await r.rotate(at(HOUR + 1000)), [], 'a second scheduled rotation while one is pending does nothing')
  const now = at(2 * HOUR)
  const events = await r.rotate(now, true)
  const k3 = events.find((e) => e.type === 'created')!.kid
  t.same(events.map((e) => e.type).sort(), ['activated', 'created', 'removed', 'retired'])
  t.equal(r.signingKey(now).kid, k3)
  const rows = await repo.list()
  t.notOk(rows.find((row) => row.kid === scheduled.kid), 'the pending key never signed and is gone')
  t.same(rows.find((row) => row.kid === k1)!.removeAfter, new Date(now.getTime() + RETIREMENT))
})

t.test('a change of algorithm: the new key is published first and signs after the lead time', async (t) => {
  const path = join(t.testdir(), 'auth.db')
  const es = ring(openRepo(t, path).repo)
  await es.maintain(T0)
  const esKid = es.signingKey(T0).kid
  // A rotation scheduled under ES256 that never got to sign.
  const esNext = (await es.rotate(at(HOUR))).find((e) => e.type === 'created')!.kid

  const { repo } = openRepo(t, path)
  const rs = ring(repo, { algorithm: 'RS256' })
  const restart = at(2 * HOUR)
  const events = await rs.maintain(restart)
  const created = events.find((e) => e.type === 'created')!
  t.equal(created.alg, 'RS256')
  t.same(created.activatesAt, new Date(restart.getTime() + LEAD))
  t.ok(events.some((e) => e.type === 'removed' && e.kid === esNext), 'the ES256 key scheduled before the change is dropped')
  t.equal(rs.signingKey(restart).kid, esKid, 'the ES256 key still signs during the lead time')
  t.same(published(rs).sort(), [esKid, created.kid].sort())
  t.same(rs.algorithms().sort(), ['ES256', 'RS256'])

  const switchAt = new Date(restart.getTime() + LEAD)
  t.equal(rs.signingKey(switchAt).alg, 'RS256')
  await rs.maintain(switchAt)
  const old = (await repo.list()).find((row) => row.kid === esKid)!
  t.equal(old.state, 'retired')
  t.ok(rs.verificationKey(esKid), 'the ES256 key verifies its tokens until they expire')
  await rs.maintain(new Date(switchAt.getTime() + RETIREMENT))
  t.same(published(rs), [created.kid])
})

t.test('HS256: asymmetric keys stop signing at once and stay published until their tokens expire', async (t) => {
  const path = join(t.testdir(), 'auth.db')
  const es = ring(openRepo(t, path).repo)
  await es.maintain(T0)
  const esKid = es.signingKey(T0).kid

  const { repo } = openRepo(t, path)
  const hs = ring(repo, { algorithm: 'HS256', secret: 's'.repeat(40) })
  const events = await hs.maintain(at(HOUR))
  t.same(events.map((e) => [e.type, e.kid]), [['retired', esKid]])
  t.equal(hs.signingKey(at(HOUR)).alg, 'HS256')
  t.same(published(hs), [esKid], 'the secret is not published; the retired ES256 key is')
  t.same(await hs.maintain(at(60 * DAY)).then((e) => e.map((x) => x.type)), ['removed'])
  t.same(published(hs), [])

  const back = ring(repo)
  const again = await back.maintain(at(61 * DAY))
  t.same(again.map((e) => e.type), ['created', 'activated'], 'back to ES256: a new key signs at once (nothing to pre-publish for)')
})

t.test('private keys are sealed at rest with KEY_ENCRYPTION_KEY, also those written before it was set', async (t) => {
  const { repo, sqlite } = openRepo(t)
  const plain = ring(repo)
  await plain.maintain(T0)
  const stored = (): string[] => (sqlite.prepare('select private_key from signing_keys').all() as Array<{ private_key: string }>).map((r) => r.private_key)
  t.match(stored()[0], /^-----BEGIN PRIVATE KEY-----/, 'without a key: PKCS#8 PEM')

  const sealed = ring(repo, { encryptionKey: KEK })
  const events = await sealed.maintain(at(1000))
  t.same(events.map((e) => e.type), ['sealed'])
  await sealed.rotate(at(2000))
  for (const value of stored()) {
    t.match(value, /^enc:v1:/)
    t.notMatch(value, /BEGIN|PRIVATE/)
  }
  t.equal(sealed.signingKey(at(2000)).kid, plain.signingKey(T0).kid, 'the same key, now sealed')

  // Even a change that needs no stored key opened (an immediate rotation writes a new one) is refused first.
  await t.rejects(ring(repo).rotate(at(3000), true), { name: 'KeyProtectionError', message: /encrypted at rest; set KEY_ENCRYPTION_KEY/ })
  await t.rejects(ring(repo, { encryptionKey: Buffer.alloc(32, 8) }).rotate(at(3000), true), { message: /could not be decrypted: KEY_ENCRYPTION_KEY is not the key/ })
  t.equal(stored().length, 2, 'a refused start writes nothing')
})

t.test('a sealed key moved to another row, or a row whose kid was altered, is refused', async (t) => {
  const { repo, sqlite } = openRepo(t)
  const r = ring(repo, { encryptionKey: KEK })
  await r.maintain(T0)
  await r.rotate(T0)
  const [a, b] = sqlite.prepare('select kid, private_key from signing_keys').all() as Array<{ kid: string, private_key: string }>
  sqlite.prepare('update signing_keys set private_key = ? where kid = ?').run(b!.private_key, a!.kid)
  await t.rejects(ring(repo, { encryptionKey: KEK }).reload(), new KeyProtectionError(`signing key ${a!.kid} could not be decrypted: KEY_ENCRYPTION_KEY is not the key it was sealed with`), 'the kid is bound to the ciphertext (AES-GCM associated data)')

  const plain = openRepo(t)
  const p = ring(plain.repo)
  await p.maintain(T0)
  await p.rotate(T0)
  const [c, d] = plain.sqlite.prepare('select kid, private_key from signing_keys').all() as Array<{ kid: string, private_key: string }>
  plain.sqlite.prepare('update signing_keys set private_key = ? where kid = ?').run(d!.private_key, c!.kid)
  await t.rejects(ring(plain.repo).reload(), { message: /not the thumbprint of its key/ })
})
