/**
 * What Drizzle costs on the hot path: the service's own repository methods (Drizzle, prepared
 * queries) against the same SQL as raw better-sqlite3 prepared statements, on a copy of a
 * seeded database (BENCH_SEED_SESSIONS sessions, default 1,000,000), in one process.
 *
 *   rotation: find the token by its id (with session and user), then the rotation
 *             transaction (insert the successor, spend and link the parent, touch the session)
 *   /me:      the live-session lookup every Bearer request makes.
 * The service runs both as raw statements (this comparison is why); here their Drizzle form,
 * the same SQL through Drizzle's prepared queries, mapping and transaction, stands against
 * them. The Drizzle rotation is the one the service ran before it became raw.
 *
 * The variants alternate in short rounds and each keeps its fastest round, so a busy machine
 * slows both alike and cannot favour one. DATABASE_SYNCHRONOUS applies (default FULL; NORMAL
 * shows the CPU cost without the per-commit fsync).
 *
 *   npm run bench:drizzle
 */
import { randomBytes } from 'node:crypto'
import { and, eq, isNull, sql } from 'drizzle-orm'
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openDatabase } from '../db/client.js'
import { createSessionsRepository } from '../db/repositories/sessions.js'
import { refreshTokens, sessions as sessionsTable, users } from '../db/schema.js'
import { loadConfig } from '../src/config.js'
import { createRefreshTokenCodec, hashRefreshToken, secretMatches } from '../src/auth/refresh-token.js'
import { BENCH_SERVER_KEY, ensureSeed, seededToken } from './seed.js'

const sessions = Number(process.env.BENCH_SEED_SESSIONS ?? 1_000_000)
const rounds = Number(process.env.BENCH_ROUNDS ?? 15)
const perRound = Number(process.env.BENCH_PER_ROUND ?? 400)
const config = loadConfig({ ...process.env, NODE_ENV: 'development', DATABASE_URL: ':memory:' })
const { password } = config

const seeded = await ensureSeed({ users: 1000, sessions, argon2: { memoryCost: password.memoryCost, timeCost: password.timeCost, parallelism: password.parallelism } }, console.error)
const dir = mkdtempSync(join(tmpdir(), 'auth-bench-drizzle-'))
const path = join(dir, 'db.db')
copyFileSync(seeded.path, path)
const { db, sqlite } = openDatabase({ path, synchronous: config.databaseSynchronous })
const repo = createSessionsRepository(db)

const codec = createRefreshTokenCodec(BENCH_SERVER_KEY)
interface Held { id: number, secret: Buffer }
// Each variant rotates its own sessions, so every rotation spends a token never spent before.
const perPool = Math.min(2000, Math.floor(sessions / 2))
const pools = [0, 1].map((v) => Array.from({ length: perPool }, (_, i): Held => {
  const j = (v * perPool + i) * Math.max(1, Math.floor(sessions / (2 * perPool)))
  const parsed = codec.parse(seededToken(j))
  if (parsed === null) throw new Error('seeded token does not parse')
  return { id: parsed.id, secret: parsed.secret }
}))
const sids = (sqlite.prepare('SELECT id FROM sessions LIMIT 2000').pluck().all() as string[])

// The rotation through Drizzle: the lookup with Drizzle's mapping, the transaction of
// Drizzle's prepared statements (better-sqlite3's own transaction around them).
const drizzleFind = db.select({
  token: { id: refreshTokens.id, tokenHash: refreshTokens.tokenHash, sessionId: refreshTokens.sessionId, successorId: refreshTokens.successorId, createdAt: refreshTokens.createdAt, expiresAt: refreshTokens.expiresAt, spentAt: refreshTokens.spentAt },
  session: sessionsTable,
  user: { id: users.id, username: users.username, roles: users.roles, disabled: users.disabled, createdAt: users.createdAt }
})
  .from(refreshTokens)
  .innerJoin(sessionsTable, eq(sessionsTable.id, refreshTokens.sessionId))
  .innerJoin(users, eq(users.id, sessionsTable.userId))
  .where(eq(refreshTokens.id, sql`cast(${sql.placeholder('id')} as integer)`))
  .prepare()
const drizzleInsert = db.insert(refreshTokens).values({
  tokenHash: sql.placeholder('hash'), sessionId: sql.placeholder('sessionId'), parentId: sql.placeholder('parentId'), createdAt: sql.placeholder('now'), expiresAt: sql.placeholder('expiresAt')
}).returning({ id: refreshTokens.id }).prepare()
const drizzleSpend = db.update(refreshTokens)
  .set({ spentAt: sql`${sql.placeholder('now')}`, successorId: sql`${sql.placeholder('successorId')}` })
  .where(and(eq(refreshTokens.id, sql.placeholder('id')), isNull(refreshTokens.spentAt)))
  .prepare()
const drizzleTouch = db.update(sessionsTable)
  .set({ lastUsedAt: sql`${sql.placeholder('now')}`, refreshExpiresAt: sql`${sql.placeholder('expiresAt')}` })
  .where(eq(sessionsTable.id, sql.placeholder('sessionId')))
  .prepare()
const drizzleRotate = sqlite.transaction((parentId: number, sessionId: string, hash: Buffer, now: Date, expiresAt: Date): number => {
  const { id } = drizzleInsert.get({ hash, sessionId, parentId, now, expiresAt })!
  if (drizzleSpend.run({ id: parentId, now: now.getTime(), successorId: id }).changes === 0) throw new Error('drizzle: already spent')
  drizzleTouch.run({ sessionId, now: now.getTime(), expiresAt: expiresAt.getTime() })
  return id
}).immediate

// The live-session lookup as the service ran it through Drizzle before it became raw.
const drizzleLive = db.select({
  session: sessionsTable,
  user: { id: users.id, username: users.username, roles: users.roles, disabled: users.disabled, createdAt: users.createdAt }
})
  .from(sessionsTable)
  .innerJoin(users, eq(users.id, sessionsTable.userId))
  .where(and(
    eq(sessionsTable.id, sql`cast(${sql.placeholder('sid')} as text)`),
    isNull(sessionsTable.revokedAt),
    sql`${sessionsTable.expiresAt} > ${sql.placeholder('now')}`,
    sql`${sessionsTable.refreshExpiresAt} > ${sql.placeholder('now')}`
  ))
  .prepare()

let drizzleCursor = 0
let rawCursor = 0
const variants: Record<string, () => Promise<void>> = {
  'rotation, Drizzle': async () => {
    const pool = pools[0]!
    const k = drizzleCursor++ % pool.length
    const held = pool[k]!
    const found = drizzleFind.get({ id: held.id })
    if (found === undefined || !secretMatches(found.token.tokenHash, held.secret) || found.token.spentAt !== null) throw new Error('drizzle: token not found or spent')
    const next = randomBytes(32)
    const now = new Date()
    pool[k] = { id: drizzleRotate(found.token.id, found.session.id, hashRefreshToken(next), now, new Date(now.getTime() + 3600_000)), secret: next }
  },
  'rotation, raw (the service)': async () => {
    const pool = pools[1]!
    const k = rawCursor++ % pool.length
    const held = pool[k]!
    const found = await repo.findToken(held.id)
    if (found === null || !secretMatches(found.token.tokenHash, held.secret) || found.token.spentAt !== null) throw new Error('raw: token not found or spent')
    const next = randomBytes(32)
    const now = new Date()
    const rotated = await repo.rotate({ parentId: found.token.id, sessionId: found.session.id, tokenHash: hashRefreshToken(next), expiresAt: new Date(now.getTime() + 3600_000), now })
    if (rotated.outcome !== 'rotated') throw new Error('raw: not rotated')
    pool[k] = { id: rotated.id, secret: next }
  },
  'live-session lookup, Drizzle (mapped)': async () => {
    if (drizzleLive.get({ sid: sids[drizzleCursor++ % sids.length]!, now: Date.now() }) === undefined) throw new Error('drizzle: no live session')
  },
  'live-session lookup, raw (the service)': async () => {
    if (await repo.findLive(sids[rawCursor++ % sids.length]!, new Date()) === null) throw new Error('raw: no live session')
  }
}

const best: Record<string, number> = {}
for (let r = 0; r < rounds; r++) {
  for (const [name, fn] of Object.entries(variants)) {
    const started = performance.now()
    for (let i = 0; i < perRound; i++) await fn()
    const usPerOp = (performance.now() - started) * 1000 / perRound
    best[name] = Math.min(best[name] ?? Infinity, usPerOp)
  }
}
sqlite.close()
rmSync(dir, { recursive: true, force: true })

console.log(`Drizzle vs raw better-sqlite3, ${sessions.toLocaleString('en')} sessions, synchronous=${config.databaseSynchronous}, best of ${rounds} rounds of ${perRound}:`)
const names = Object.keys(variants)
for (let i = 0; i < names.length; i += 2) {
  const [a, b] = [names[i]!, names[i + 1]!]
  console.log(`  ${a.padEnd(44)} ${best[a]!.toFixed(1).padStart(7)} µs  (${(1e6 / best[a]!).toFixed(0)}/s)`)
  console.log(`  ${b.padEnd(44)} ${best[b]!.toFixed(1).padStart(7)} µs  (${(1e6 / best[b]!).toFixed(0)}/s)`)
  console.log(`  Drizzle's overhead: ${((best[a]! / best[b]! - 1) * 100).toFixed(0)} %`)
}
