import t, { type Test } from 'tap'
import { openDatabase } from '../../db/client.js'
import { runMigrations } from '../../db/migrate.js'
import { createSessionsRepository } from '../../db/repositories/sessions.js'
import { createUsersRepository } from '../../db/repositories/users.js'
import { deriveSuccessor, hashRefreshToken, parseRefreshToken } from '../../src/auth/refresh-token.js'
import { createSessionManager } from '../../src/auth/sessions.js'

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
  const started = await manager.start(user, { userAgent: 'ua', ip: '127.0.0.1' }, now)
  const outcomes: string[] = []
  const rotate = repo.rotate
  repo.rotate = async (r) => { const o = await rotate(r); outcomes.push(o); return o }
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
  const started = await manager.start(user, { userAgent: null, ip: null }, now)
  const next = await manager.rotate(started.refreshToken, now)
  t.ok(next.ok)
  const parent = parseRefreshToken(started.refreshToken)!
  if (next.ok) {
    t.equal(next.refreshToken, deriveSuccessor(key, parent).toString('base64url'))
    t.not(next.refreshToken, deriveSuccessor(Buffer.alloc(32, 8), parent).toString('base64url'))
  }
})

t.test('only SHA-256 digests of refresh tokens are stored', async (t) => {
  const { manager, user, now, sqlite } = await setup(t)
  const started = await manager.start(user, { userAgent: null, ip: null }, now)
  const rows = sqlite.prepare('SELECT * FROM refresh_tokens').all() as Array<Record<string, unknown>>
  t.equal(rows.length, 1)
  const stored = JSON.stringify(rows, (_k, v) => (Buffer.isBuffer(v) ? v.toString('base64url') : v))
  t.notMatch(stored, started.refreshToken)
  t.same(rows[0]!.token_hash, hashRefreshToken(parseRefreshToken(started.refreshToken)!))
})

t.test('parseRefreshToken accepts only canonical 43-character base64url of 32 bytes', async (t) => {
  const good = Buffer.alloc(32, 1).toString('base64url')
  t.ok(parseRefreshToken(good))
  t.equal(parseRefreshToken(good.slice(0, -1) + (good.endsWith('E') ? 'F' : 'E')), null, 'non-canonical trailing bits')
  t.equal(parseRefreshToken(good + 'A'), null)
  t.equal(parseRefreshToken(good.slice(1)), null)
  t.equal(parseRefreshToken('+'.repeat(43)), null)
})

t.test('findLive answers a live session with its user, typed as the schema says, and nothing else', async (t) => {
  const { manager, repo, user, now, sqlite } = await setup(t)
  sqlite.prepare("UPDATE users SET roles = '[\"user\",\"admin\"]' WHERE id = ?").run(user.id)
  const started = await manager.start(user, { userAgent: 'ua', ip: '127.0.0.1' }, now)
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
      revokedReason: null
    },
    user: { id: 'u1', username: 'alice', roles: ['user', 'admin'], disabled: false, createdAt: now }
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
