import { statSync } from 'node:fs'
import t, { type Test } from 'tap'
import { openDatabase } from '../../../db/client.js'
import { runMigrations } from '../../../db/migrate.js'
import { createSessionsRepository } from '../../../db/repositories/sessions.js'
import { createUsersRepository } from '../../../db/repositories/users.js'
import { createRefreshTokenCodec, hashRefreshToken } from '../../../src/auth/refresh-token.js'
import { createSessionManager } from '../../../src/auth/session-manager.js'

async function setup (t: Test) {
  const { db, sqlite } = openDatabase({ path: ':memory:' })
  t.teardown(() => sqlite.close())
  runMigrations(db)
  const users = createUsersRepository(db)
  const repo = createSessionsRepository(db)
  const now = new Date('2026-01-01T00:00:00Z')
  const user = (await users.insert({ id: 'u1', username: 'alice', usernameKey: 'alice', passwordHash: 'x', roles: ['user'], now }))!
  const key = Buffer.alloc(32, 7)
  const manager = createSessionManager(repo, key, { refreshTtlSeconds: 3600, sessionMaxAgeSeconds: 86400, reuseIntervalSeconds: 10 })
  return { sqlite, repo, manager, user, now, key }
}

t.test('two rotations racing on one token: one writes, the other gets the same successor via the reuse rule', async (t) => {
  const { manager, repo, user, now, sqlite } = await setup(t)
  const started = (await manager.start(user, { userAgent: 'ua', ip: '127.0.0.1', amr: ['pwd'] }, now))!
  const outcomes: string[] = []
  const rotate = repo.rotate
  repo.rotate = async (r) => { const o = await rotate(r); outcomes.push(o.outcome); return o }
  // Both calls read the token as unspent before either writes.
  const [a, b] = await Promise.all([manager.rotate(started.refreshToken, now), manager.rotate(started.refreshToken, now)])
  t.same(outcomes, ['rotated', 'already_spent'], 'the conditional update let exactly one rotation win')
  t.ok(a.ok && b.ok)
  if (a.ok && b.ok) {
    t.equal(a.refreshToken, b.refreshToken)
    t.equal(b.reused, true)
  }
  t.equal((sqlite.prepare('SELECT count(*) AS n FROM refresh_tokens').get() as { n: number }).n, 2, 'one successor row, not two')
})

t.test('successors are derived with the server key: recomputable from the parent, unlike any other key', async (t) => {
  const { manager, user, now, key } = await setup(t)
  const codec = createRefreshTokenCodec(key)
  const started = (await manager.start(user, { userAgent: null, ip: null, amr: ['pwd'] }, now))!
  const next = await manager.rotate(started.refreshToken, now)
  t.ok(next.ok)
  const parent = codec.parse(started.refreshToken)
  const child = next.ok ? codec.parse(next.refreshToken) : null
  if (parent !== null && child !== null) {
    t.same(child.secret, codec.deriveSuccessor(parent.secret), 'the successor secret is HMAC(key, parent)')
    t.notSame(child.secret, createRefreshTokenCodec(Buffer.alloc(32, 8)).deriveSuccessor(parent.secret), 'another key derives another secret')
    t.equal(child.id, parent.id + 1, 'and the successor is the next row')
  } else {
    t.fail('both tokens parse')
  }
})

t.test('only SHA-256 digests of refresh tokens are stored', async (t) => {
  const { manager, user, now, sqlite, key } = await setup(t)
  const started = (await manager.start(user, { userAgent: null, ip: null, amr: ['pwd'] }, now))!
  const rows = sqlite.prepare('SELECT * FROM refresh_tokens').all() as Array<Record<string, unknown>>
  t.equal(rows.length, 1)
  const parsed = createRefreshTokenCodec(key).parse(started.refreshToken)!
  const stored = JSON.stringify(rows, (_k, v) => (Buffer.isBuffer(v) ? v.toString('base64url') : v))
  t.notMatch(stored, started.refreshToken)
  t.notMatch(stored, parsed.secret.toString('base64url'), 'nor its secret')
  t.same(rows[0]!.token_hash, hashRefreshToken(parsed.secret))
})

t.test('a token is 64 base64url characters: an encrypted selector naming its row, and the secret', async (t) => {
  const codec = createRefreshTokenCodec(Buffer.alloc(32, 7))
  const secret = Buffer.alloc(32, 1)
  const token = codec.encode(41, secret)
  t.match(token, /^[A-Za-z0-9_-]{64}$/)
  t.same(codec.parse(token), { id: 41, secret })
  const bytes = Buffer.from(token, 'base64url')
  t.notOk(bytes.subarray(0, 16).includes(Buffer.from([0, 0, 0, 0, 0, 0, 0, 41])), 'the id does not show in the token')
  t.not(codec.encode(42, secret).slice(0, 22), token.slice(0, 22), 'consecutive ids give unrelated selectors')

  t.equal(createRefreshTokenCodec(Buffer.alloc(32, 8)).parse(token), null, 'a selector made under another key is refused')
  const flipped = Buffer.from(bytes)
  flipped[3] = flipped[3]! ^ 1
  t.equal(codec.parse(flipped.toString('base64url')), null, 'a selector altered in one bit is refused')
  t.equal(codec.parse(codec.encode(1, secret).slice(0, -1)), null, 'too short')
  t.equal(codec.parse(token + 'A'), null, 'too long')
  t.equal(codec.parse('+'.repeat(64)), null, 'not base64url')
  t.equal(codec.parse(''), null)
})

t.test('a token of 43 characters (the secret alone, as tokens were before selectors) is not understood', async (t) => {
  const { manager, user, now, sqlite } = await setup(t)
  const codec = createRefreshTokenCodec(Buffer.alloc(32, 7))
  t.equal(codec.parse(Buffer.alloc(32, 1).toString('base64url')), null)
  const started = (await manager.start(user, { userAgent: null, ip: null, amr: ['pwd'] }, now))!
  // Even when some row holds the digest of that secret.
  const secret = Buffer.alloc(32, 3)
  sqlite.prepare('UPDATE refresh_tokens SET token_hash = ?').run(hashRefreshToken(secret))
  const rotated = await manager.rotate(secret.toString('base64url'), now)
  t.same(rotated.ok ? 'ok' : rotated.reason, 'malformed')
  t.equal((await manager.rotate(started.refreshToken, now)).ok, false, 'the row now holds another digest')
})

t.test('a successor row whose digest is not the derived one ends the chain: no token of another session is handed out', async (t) => {
  const { manager, user, now, sqlite } = await setup(t)
  const started = (await manager.start(user, { userAgent: null, ip: null, amr: ['pwd'] }, now))!
  const next = await manager.rotate(started.refreshToken, now)
  t.ok(next.ok)
  // As if the successor had been pruned and its id taken by an unrelated token.
  sqlite.prepare('UPDATE refresh_tokens SET token_hash = ? WHERE parent_id IS NOT NULL').run(Buffer.alloc(32, 9))
  const again = await manager.rotate(started.refreshToken, new Date(now.getTime() + 1_000))
  t.same(again.ok ? 'ok' : again.reason, 'revoked', 'refused, not answered with the foreign row')
})

t.test('a token whose secret is wrong is unknown, whatever row its selector names', async (t) => {
  const { manager, user, now, key } = await setup(t)
  const codec = createRefreshTokenCodec(key)
  const started = (await manager.start(user, { userAgent: null, ip: null, amr: ['pwd'] }, now))!
  const { id } = codec.parse(started.refreshToken) as { id: number }
  const forged = codec.encode(id, Buffer.alloc(32, 5))
  t.same(await manager.rotate(forged, now), { ok: false, reason: 'unknown' })
  t.equal(await manager.endByToken(forged, 'logout', now), null, 'nor can it end the session')
  t.same(await manager.rotate(codec.encode(id + 100, Buffer.alloc(32, 5)), now), { ok: false, reason: 'unknown' }, 'an id with no row')
  t.equal((await manager.rotate(started.refreshToken, now)).ok, true, 'the real token still works')
})

t.test('findLive answers a live session with its user, typed as the schema says, and nothing else', async (t) => {
  const { manager, repo, user, now, sqlite } = await setup(t)
  sqlite.prepare("UPDATE users SET roles = '[\"user\",\"admin\"]' WHERE id = ?").run(user.id)
  const started = (await manager.start(user, { userAgent: 'ua', ip: '127.0.0.1', amr: ['pwd'] }, now))!
  const sid = started.session.id
  const live = await repo.findLive(sid, now)
  t.same(live, {
    session: {
      id: sid,
      userId: 'u1',
      createdAt: now,
      lastUsedAt: now,
      expiresAt: new Date(now.getTime() + 86400_000),
      refreshExpiresAt: new Date(now.getTime() + 3600_000),
      userAgent: 'ua',
      ip: '127.0.0.1',
      revokedAt: null,
      revokedReason: null,
      amr: ['pwd'],
      authTime: now
    },
    user: { id: 'u1', username: 'alice', roles: ['user', 'admin'], disabled: false, createdAt: now, email: null, emailVerified: null }
  })
  t.ok(live!.session.createdAt instanceof Date && live!.user.createdAt instanceof Date, 'timestamps are Dates')

  sqlite.prepare('UPDATE users SET disabled = 1 WHERE id = ?').run(user.id)
  t.equal((await repo.findLive(sid, now))?.user.disabled, true, 'a disabled user reads as disabled (authenticate refuses it)')

  t.equal(await repo.findLive(sid, new Date(now.getTime() + 3600_000)), null, 'idle past the refresh token: not live')
  t.equal(await repo.findLive(sid, new Date(now.getTime() + 86400_000)), null, 'past the absolute expiry: not live')
  t.equal(await repo.findLive('no-such-session', now), null)
  await repo.revoke(sid, 'logout', now)
  t.equal(await repo.findLive(sid, now), null, 'revoked: not live')
})

t.test('a rotation writes few pages: the token table has no index on its path', async (t) => {
  // Each page a commit changes is one WAL frame. The token table has no index: a lookup by
  // digest (an index over random keys, and one on session_id) and an index on expires_at made
  // a rotation write 8 pages on a large database; by id, the new row lands beside the last.
  const path = `${t.testdir()}/frames.db`
  const { db, sqlite } = openDatabase({ path, synchronous: 'NORMAL' })
  t.teardown(() => sqlite.close())
  runMigrations(db)
  const users = createUsersRepository(db)
  const now = new Date('2026-01-01T00:00:00Z')
  const user = (await users.insert({ id: 'u1', username: 'alice', usernameKey: 'alice', passwordHash: 'x', roles: ['user'], now }))!
  const manager = createSessionManager(createSessionsRepository(db), Buffer.alloc(32, 7), { refreshTtlSeconds: 3600, sessionMaxAgeSeconds: 86400, reuseIntervalSeconds: 10 })
  let tokens: string[] = []
  for (let i = 0; i < 500; i++) tokens.push((await manager.start(user, { userAgent: null, ip: null, amr: ['pwd'] }, now))!.refreshToken)
  sqlite.pragma('wal_autocheckpoint = 0')
  sqlite.pragma('wal_checkpoint(TRUNCATE)')
  const frames = (): number => (statSync(`${path}-wal`).size - 32) / (4096 + 24)
  const before = frames()
  for (let round = 0; round < 2; round++) {
    const next: string[] = []
    for (const token of tokens) {
      const r = await manager.rotate(token, now)
      if (!r.ok) throw new Error(r.reason)
      next.push(r.refreshToken)
    }
    tokens = next
  }
  const perRotation = (frames() - before) / 1000
  t.ok(perRotation < 2.6, `${perRotation.toFixed(2)} pages written per rotation (with the expires_at index alone: 3.2)`)
})
