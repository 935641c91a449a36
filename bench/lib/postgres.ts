/**
 * PostgreSQL for the benchmark: a throwaway cluster on loopback (the test suite's own helper,
 * test/support/postgres-cluster.ts, with its no-fsync settings turned back to durable ones), a
 * seeded template database, and a fresh copy of it per round.
 *
 * Durability as in production: fsync, synchronous_commit and full_page_writes on, so every
 * commit a refresh or a login acknowledges is flushed to the WAL on disk first; the figures
 * are those of a server that keeps what it answered.
 *
 * The seed follows bench/seed.ts: the same users (password BENCH_PASSWORD), the same server
 * key, and for session j the same refresh token (seededToken(j)), in the token row with id
 * j + 1; it is written by the server itself (generate_series, sha256), then VACUUM ANALYZE.
 */
import { hash } from '@node-rs/argon2'
import pg from 'pg'
import { runPgMigrations } from '../../db/pg/migrate.js'
import { usernameKeys } from '../../src/auth/credentials.js'
import { findPostgresBin, startPostgresCluster, type PostgresCluster } from '../../test/support/postgres-cluster.js'
import { BENCH_PASSWORD, BENCH_SERVER_KEY, seededUsername, userIdOf } from '../seed.js'

const SEED_DB = 'bench_seed'

/** Why PostgreSQL scenarios cannot run here, or null when they can. */
export function postgresMissing (): string | null {
  const found = findPostgresBin()
  return 'bin' in found ? null : found.missing
}

export async function startBenchCluster (): Promise<PostgresCluster> {
  return await startPostgresCluster({
    settings: {
      fsync: 'on',
      synchronous_commit: 'on',
      full_page_writes: 'on',
      log_statement: 'none'
    }
  })
}

/** The URL of `database` on the cluster. */
export function databaseUrl (cluster: PostgresCluster, database: string): string {
  const u = new URL(cluster.url)
  u.pathname = `/${database}`
  return u.toString()
}

/** Creates the template database: the service's migrations, `users` accounts, `sessions` live sessions. */
export async function seedTemplate (cluster: PostgresCluster, spec: { users: number, sessions: number, argon2: { memoryCost: number, timeCost: number, parallelism: number } }): Promise<number> {
  const started = performance.now()
  cluster.psql(`CREATE DATABASE ${SEED_DB}`)
  const pool = new pg.Pool({ connectionString: databaseUrl(cluster, SEED_DB), max: 1 })
  try {
    await runPgMigrations(pool)
    const passwordHash = await hash(BENCH_PASSWORD, { algorithm: 2, outputLen: 32, ...spec.argon2 })
    const now = new Date()
    const until = new Date(now.getTime() + 365 * 24 * 3600_000)
    const ids: string[] = []
    const names: string[] = []
    const keys: string[] = []
    const folds: (string | null)[] = []
    const skeletons: (string | null)[] = []
    for (let u = 0; u < spec.users; u++) {
      const name = seededUsername(u)
      const k = usernameKeys(name)
      ids.push(userIdOf(u))
      names.push(name)
      keys.push(k.key)
      folds.push(k.fold)
      skeletons.push(k.skeleton)
    }
    await pool.query(`INSERT INTO users (id, username, username_key, username_fold, username_skeleton, password_hash, roles, disabled, created_at, updated_at, password_changed_at)
      SELECT id, username, k, f, s, $6, '["user"]'::jsonb, false, $7, $7, $7 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS x(id, username, k, f, s)`,
    [ids, names, keys, folds, skeletons, passwordHash, now])
    await pool.query("INSERT INTO server_secrets (name, value, created_at) VALUES ('refresh-token-derivation', $1, $2)", [BENCH_SERVER_KEY, now])
    // Session j belongs to user j % users (userIdOf's format); its token's secret is
    // SHA-256("bench-rt:" + j), stored as its SHA-256, as bench/seed.ts writes them.
    await pool.query(`INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, refresh_expires_at, user_agent, ip)
      SELECT 'bench-sid-' || j, '00000000-0000-4000-8000-' || lpad(to_hex(j % $1), 12, '0'), $2, $2, $3, $3, 'bench-seed', '127.0.0.1'
      FROM generate_series(0, $4 - 1) AS j`, [spec.users, now, until, spec.sessions])
    await pool.query(`INSERT INTO refresh_tokens (id, token_hash, session_id, created_at, expires_at)
      SELECT j + 1, sha256(sha256(convert_to('bench-rt:' || j, 'UTF8'))), 'bench-sid-' || j, $1, $2
      FROM generate_series(0, $3 - 1) AS j`, [now, until, spec.sessions])
    // The ids were given explicitly: the identity goes on after them.
    await pool.query("SELECT setval(pg_get_serial_sequence('refresh_tokens', 'id'), $1)", [spec.sessions])
    await pool.query('VACUUM ANALYZE')
  } finally {
    await pool.end()
  }
  return (performance.now() - started) / 1000
}

/** A fresh database copied from the template (CREATE DATABASE ... TEMPLATE): its URL. */
export function copyTemplate (cluster: PostgresCluster, name: string): string {
  cluster.psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  cluster.psql(`CREATE DATABASE ${name} TEMPLATE ${SEED_DB}`)
  return databaseUrl(cluster, name)
}

export function dropDatabase (cluster: PostgresCluster, name: string): void {
  cluster.psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
}
