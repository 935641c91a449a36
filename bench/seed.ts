/**
 * Seeds a benchmark database: USERS accounts and SESSIONS live sessions, each with one unspent
 * refresh token, written directly with better-sqlite3 in large transactions (the service's own
 * migrations create the schema first, so the tables and indexes are exactly the service's).
 *
 * Everything is derived from the row number, so the harness can present session j's refresh
 * token without storing it: its secret is SHA-256("bench-rt:" + j), stored as SHA-256 of that
 * like every token the service issues, in the token row with id j + 1; the token is that id's
 * selector and the secret, made under a fixed server key (BENCH_SERVER_KEY) that the seed
 * writes where the service keeps its own, so the service issues and reads tokens under it.
 * Session j belongs to user j % USERS; every user has the password BENCH_PASSWORD, hashed once
 * with argon2id at the service's parameters.
 *
 * Seeded files are cached (BENCH_CACHE_DIR, default <tmp>/auth-service-bench-cache) under a
 * name keyed by the schema (every migration file), this file's format version, the counts and
 * the argon2 parameters, so a rerun does not reseed; a stale file of the same size is removed
 * when its replacement is written. Runs copy the cached file and never write to it.
 *
 *   npm run bench:seed -- 1000000      seeds (or finds) the 1M-session database and prints its path
 */
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { hash } from '@node-rs/argon2'
import { openDatabase } from '../db/client.js'
import { migrationsFolder, runMigrations } from '../db/migrate.js'
import { usernameKeys } from '../src/auth/credentials.js'
import { createRefreshTokenCodec, hashRefreshToken } from '../src/auth/refresh-token.js'

export const SEED_FORMAT = 2
export const BENCH_PASSWORD = 'bench-password-correct-horse-battery'
/** Seeded sessions and tokens expire this long after the seed was written; older caches are reseeded. */
const SEED_LIFETIME_MS = 365 * 24 * 3600_000
const SEED_MAX_AGE_MS = 300 * 24 * 3600_000
const BATCH = 50_000

export interface SeedSpec {
  users: number
  sessions: number
  argon2: { memoryCost: number, timeCost: number, parallelism: number }
}

export interface Seeded {
  path: string
  spec: SeedSpec
  /** Seconds spent seeding; 0 when the cached file was used. */
  seedSeconds: number
  cached: boolean
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest()

/** The service's refresh-token key in seeded databases (server_secrets 'refresh-token-derivation'). */
export const BENCH_SERVER_KEY = sha256('bench-server-key')
const codec = createRefreshTokenCodec(BENCH_SERVER_KEY)
const secretOf = (j: number): Buffer => sha256(`bench-rt:${j}`)

/** The refresh token of seeded session `j`, as a client presents it. */
export function seededToken (j: number): string {
  return codec.encode(j + 1, secretOf(j))
}

export function seededUsername (u: number): string {
  return `bench-user-${u}`
}

export function userIdOf (u: number): string {
  return `00000000-0000-4000-8000-${u.toString(16).padStart(12, '0')}`
}

const sessionIdOf = (j: number): string => sha256(`bench-sid:${j}`).toString('base64url').slice(0, 22)

export function cacheDir (): string {
  return process.env.BENCH_CACHE_DIR ?? join(tmpdir(), 'auth-service-bench-cache')
}

/** A digest of the schema as the migrations build it: a new migration means a new seed. */
function schemaVersion (): string {
  const h = createHash('sha256')
  const files = readdirSync(migrationsFolder, { recursive: true, encoding: 'utf8' }).filter((f) => /\.(sql|json)$/.test(f)).sort()
  for (const f of files) h.update(f).update(readFileSync(join(migrationsFolder, f)))
  return h.digest('hex').slice(0, 12)
}

function fileNameOf (spec: SeedSpec): { prefix: string, name: string } {
  const key = createHash('sha256')
    .update(JSON.stringify({ format: SEED_FORMAT, schema: schemaVersion(), spec }))
    .digest('hex').slice(0, 12)
  const prefix = `seed-u${spec.users}-s${spec.sessions}-`
  return { prefix, name: `${prefix}${key}.db` }
}

function write (path: string, spec: SeedSpec, passwordHash: string): void {
  const { sqlite, db } = openDatabase({ path })
  try {
    runMigrations(db)
    // A throwaway file: no journal, no syncs, a large page cache. The finished file is switched
    // back to WAL below, as the service expects.
    sqlite.pragma('journal_mode = OFF')
    sqlite.pragma('synchronous = OFF')
    sqlite.pragma('cache_size = -262144')
    sqlite.pragma('foreign_keys = OFF')
    const now = Date.now()
    const until = now + SEED_LIFETIME_MS

    const insertUser = sqlite.prepare(`INSERT INTO users (id, username, username_key, username_fold, username_skeleton, password_hash, roles, disabled, created_at, updated_at, password_changed_at)
      VALUES (?, ?, ?, ?, ?, ?, '["user"]', 0, ?, ?, ?)`)
    sqlite.transaction(() => {
      for (let u = 0; u < spec.users; u++) {
        const name = seededUsername(u)
        const keys = usernameKeys(name)
        insertUser.run(userIdOf(u), name, keys.key, keys.fold, keys.skeleton, passwordHash, now, now, now)
      }
    })()

    const insertSession = sqlite.prepare(`INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, refresh_expires_at, user_agent, ip)
      VALUES (?, ?, ?, ?, ?, ?, 'bench-seed', '127.0.0.1')`)
    const insertToken = sqlite.prepare(`INSERT INTO refresh_tokens (id, token_hash, session_id, created_at, expires_at)
      VALUES (?, ?, ?, ?, ?)`)
    sqlite.prepare("INSERT INTO server_secrets (name, value, created_at) VALUES ('refresh-token-derivation', ?, ?)").run(BENCH_SERVER_KEY, now)
    const batch = sqlite.transaction((from: number, to: number) => {
      for (let j = from; j < to; j++) {
        const sid = sessionIdOf(j)
        insertSession.run(sid, userIdOf(j % spec.users), now, now, until, until)
        insertToken.run(j + 1, hashRefreshToken(secretOf(j)), sid, now, until)
      }
    })
    for (let from = 0; from < spec.sessions; from += BATCH) {
      batch(from, Math.min(spec.sessions, from + BATCH))
      if (spec.sessions >= 200_000 && (from / BATCH) % 4 === 3) {
        process.stderr.write(`  seeded ${Math.min(spec.sessions, from + BATCH).toLocaleString('en')} of ${spec.sessions.toLocaleString('en')} sessions\n`)
      }
    }
    sqlite.pragma('foreign_keys = ON')
    const broken = sqlite.pragma('foreign_key_check') as unknown[]
    if (broken.length > 0) throw new Error(`seed: ${broken.length} rows break a foreign key`)
    sqlite.pragma('journal_mode = WAL')
  } finally {
    sqlite.close()
  }
}

/** The path of a seeded database for `spec`, seeding it first unless a fresh one is cached. */
export async function ensureSeed (spec: SeedSpec, log: (line: string) => void = () => {}): Promise<Seeded> {
  const dir = cacheDir()
  mkdirSync(dir, { recursive: true })
  const { prefix, name } = fileNameOf(spec)
  const path = join(dir, name)
  if (existsSync(path) && Date.now() - statSync(path).mtimeMs < SEED_MAX_AGE_MS) {
    return { path, spec, seedSeconds: 0, cached: true }
  }
  log(`seeding ${spec.sessions.toLocaleString('en')} sessions for ${spec.users.toLocaleString('en')} users into ${path}`)
  const started = performance.now()
  const passwordHash = await hash(BENCH_PASSWORD, { algorithm: 2, outputLen: 32, ...spec.argon2 })
  const tmp = `${path}.tmp-${process.pid}`
  try {
    write(tmp, spec, passwordHash)
    for (const f of readdirSync(dir)) {
      if (f.startsWith(prefix) && !f.startsWith(name) && !f.includes('.tmp-')) rmSync(join(dir, f), { force: true })
    }
    renameSync(tmp, path)
  } finally {
    for (const suffix of ['', '-wal', '-shm']) rmSync(tmp + suffix, { force: true })
  }
  const seedSeconds = (performance.now() - started) / 1000
  log(`seeded in ${seedSeconds.toFixed(1)} s (${(statSync(path).size / 1e6).toFixed(0)} MB)`)
  return { path, spec, seedSeconds, cached: false }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { loadConfig } = await import('../src/config.js')
  const { password } = loadConfig({ ...process.env, NODE_ENV: 'development' })
  const sessions = Number(process.argv[2] ?? process.env.BENCH_SEED_SESSIONS ?? 1_000_000)
  const seeded = await ensureSeed({ users: 1000, sessions, argon2: { memoryCost: password.memoryCost, timeCost: password.timeCost, parallelism: password.parallelism } }, console.error)
  console.log(seeded.path)
}
