/**
 * What Drizzle costs on the hot path: the service's own repository methods (Drizzle, prepared
 * queries) against the same SQL as raw better-sqlite3 prepared statements, on a copy of a
 * seeded database (BENCH_SEED_SESSIONS sessions, default 1,000,000), in one process.
 *
 *   rotation: find the token by its id (with session and user), then the rotation
 *             transaction (spend, insert successor, link, touch session)
 *   /me:      the live-session lookup every Bearer request makes. The service now runs it as
 *             a raw statement (this comparison is why); here its former Drizzle form, the
 *             same select through Drizzle's prepared query and mapping, stands against it.
 *
 * The variants alternate in short rounds and each keeps its fastest round, so a busy machine
 * slows both alike and cannot favour one. DATABASE_SYNCHRONOUS applies (default FULL; NORMAL
 * shows the CPU cost without the per-commit fsync).
 *
 *   npm run bench:drizzle
 */
import { createHash, randomBytes } from 'node:crypto'
import { and, eq, isNull, sql } from 'drizzle-orm'
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openDatabase } from '../db/client.js'
import { createSessionsRepository } from '../db/repositories/sessions.js'
import { sessions as sessionsTable, users } from '../db/schema.js'
import { loadConfig } from '../src/config.js'
import { createRefreshTokenCodec, secretMatches } from '../src/auth/refresh-token.js'
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

const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest()
const codec = createRefreshTokenCodec(BENCH_SERVER_KEY)
interface Held { id: number, secret: Buffer }
// Each variant rotates its own sessions, so every rotation spends a token never spent before.
const pools = [0, 1].map((v) => Array.from({ length: 2000 }, (_, i): Held => {
  const j = (v * 2000 + i) * Math.max(1, Math.floor(sessions / 4000)) % sessions
  const parsed = codec.parse(seededToken(j))
  if (parsed?.kind !== 'selector') throw new Error('seeded token does not parse')
  return { id: parsed.id, secret: parsed.secret }
}))
const sids = (sqlite.prepare('SELECT id FROM sessions LIMIT 2000').pluck().all() as string[])

const raw = {
  find: sqlite.prepare(`SELECT t.id, t.session_id, t.created_at, t.expires_at, t.spent_at, t.token_hash, t.successor_id,
      s.id, s.user_id, s.created_at, s.last_used_at, s.expires_at, s.refresh_expires_at, s.user_agent, s.ip, s.revoked_at, s.revoked_reason,
      u.id, u.username, u.roles, u.disabled
    FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = s.user_id WHERE t.id = CAST(? AS INTEGER)`).raw(),
  spend: sqlite.prepare('UPDATE refresh_tokens SET spent_at = ? WHERE id = ? AND spent_at IS NULL'),
  insert: sqlite.prepare('INSERT INTO refresh_tokens (token_hash, session_id, parent_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?) RETURNING id').pluck(),
  link: sqlite.prepare('UPDATE refresh_tokens SET successor_id = ? WHERE id = ?'),
  touch: sqlite.prepare('UPDATE sessions SET last_used_at = ?, refresh_expires_at = ? WHERE id = ?')
}
const rawRotate = sqlite.transaction((parentId: number, sessionId: string, hash: Buffer, now: number, expiresAt: number): number | null => {
  if (raw.spend.run(now, parentId).changes === 0) return null
  const id = raw.insert.get(hash, sessionId, parentId, now, expiresAt) as number
  raw.link.run(id, parentId)
  raw.touch.run(now, expiresAt, sessionId)
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
  'rotation, Drizzle (the service)': async () => {
    const pool = pools[0]!
    const k = drizzleCursor++ % pool.length
    const held = pool[k]!
    const found = await repo.findToken(held.id)
    if (found === null || !secretMatches(found.token.tokenHash, held.secret) || found.token.spentAt !== null) throw new Error('drizzle: token not found or spent')
    const next = randomBytes(32)
    const now = new Date()
    const rotated = await repo.rotate({ parentId: found.token.id, sessionId: found.session.id, tokenHash: sha256(next), expiresAt: new Date(now.getTime() + 3600_000), now })
    if (rotated.outcome !== 'rotated') throw new Error('drizzle: not rotated')
    pool[k] = { id: rotated.id, secret: next }
  },
  'rotation, raw better-sqlite3': async () => {
    const pool = pools[1]!
    const k = rawCursor++ % pool.length
    const held = pool[k]!
    const row = raw.find.get(held.id) as unknown[] | undefined
    if (row === undefined || !secretMatches(row[5] as Buffer, held.secret) || row[4] !== null) throw new Error('raw: token not found or spent')
    const next = randomBytes(32)
    const now = Date.now()
    const id = rawRotate(row[0] as number, row[1] as string, sha256(next), now, now + 3600_000)
    if (id === null) throw new Error('raw: not rotated')
    pool[k] = { id, secret: next }
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
