/**
 * Which PostgreSQL driver the service uses: `pg` (node-postgres, through drizzle-orm/node-postgres)
 * or `postgres` (postgres.js, through drizzle-orm/postgres-js), measured on the shape of a
 * refresh: the token with its session and user looked up by id, then one transaction that
 * inserts the successor, spends the parent with a conditional UPDATE (checking the row count)
 * and touches the session. 16 rotations in flight, over a pool of 10 connections, each
 * in-flight worker following its own chain.
 *
 * The drivers alternate in rounds of ROUND_MS so that a busy machine slows both alike; each
 * keeps its best round (throughput) and the p99 of that round.
 *
 *   BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:55432/postgres node --import tsx bench/pg-driver.ts
 *
 * It creates (and drops at the end) a database named bench_pg_driver on that server.
 */
import { randomBytes } from 'node:crypto'
import { sql } from 'drizzle-orm'
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres'
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js'
import pg from 'pg'
import postgres from 'postgres'

const ADMIN_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:55432/postgres'
const ROUND_MS = Number(process.env.ROUND_MS ?? 3000)
const ROUNDS = Number(process.env.ROUNDS ?? 3)
const IN_FLIGHT = 16
const POOL = 10
const DB_NAME = 'bench_pg_driver'

type Exec = (query: ReturnType<typeof sql>) => Promise<Array<Record<string, unknown>>>
interface Driver {
  name: string
  execute: Exec
  transaction: <T>(fn: (execute: Exec) => Promise<T>) => Promise<T>
  close: () => Promise<void>
}

function dbUrl (): string {
  const u = new URL(ADMIN_URL)
  u.pathname = `/${DB_NAME}`
  return u.toString()
}

function pgDriver (): Driver {
  const pool = new pg.Pool({ connectionString: dbUrl(), max: POOL })
  pool.on('error', () => {})
  const db = drizzlePg(pool)
  const rows = (r: { rows: Array<Record<string, unknown>> }) => r.rows
  return {
    name: 'pg',
    execute: async (q) => rows(await db.execute(q)),
    transaction: async (fn) => await db.transaction(async (tx) => await fn(async (q) => rows(await tx.execute(q)))),
    close: async () => { await pool.end() }
  }
}

function postgresJsDriver (): Driver {
  const client = postgres(dbUrl(), { max: POOL, onnotice: () => {} })
  const db = drizzlePostgresJs(client)
  return {
    name: 'postgres',
    execute: async (q) => [...await db.execute(q)] as Array<Record<string, unknown>>,
    transaction: async (fn) => await db.transaction(async (tx) => await fn(async (q) => [...await tx.execute(q)] as Array<Record<string, unknown>>)),
    close: async () => { await client.end() }
  }
}

async function setUp (): Promise<void> {
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} })
  await admin.unsafe(`DROP DATABASE IF EXISTS ${DB_NAME}`)
  await admin.unsafe(`CREATE DATABASE ${DB_NAME}`)
  await admin.end()
  const c = postgres(dbUrl(), { max: 1, onnotice: () => {} })
  await c.unsafe(`
    CREATE TABLE users (id text PRIMARY KEY, username text NOT NULL, roles jsonb NOT NULL, disabled boolean NOT NULL, created_at timestamptz NOT NULL);
    CREATE TABLE sessions (id text PRIMARY KEY, user_id text NOT NULL REFERENCES users(id), created_at timestamptz NOT NULL,
      last_used_at timestamptz NOT NULL, expires_at timestamptz NOT NULL, refresh_expires_at timestamptz NOT NULL, revoked_at timestamptz);
    CREATE TABLE refresh_tokens (id bigserial PRIMARY KEY, token_hash bytea NOT NULL, session_id text NOT NULL, parent_id bigint,
      successor_id bigint, created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL, spent_at timestamptz);
  `)
  await c.end()
}

async function tearDown (): Promise<void> {
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} })
  await admin.unsafe(`DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)`)
  await admin.end()
}

/** One worker's chain: a user, a session and the current token's id. */
async function seedChain (d: Driver, i: number): Promise<string> {
  const now = new Date().toISOString()
  const later = new Date(Date.now() + 86_400_000).toISOString()
  const uid = `u${i}-${randomBytes(4).toString('hex')}`
  const sid = `s${i}-${randomBytes(4).toString('hex')}`
  await d.execute(sql`INSERT INTO users VALUES (${uid}, ${uid}, '["user"]'::jsonb, false, ${now})`)
  await d.execute(sql`INSERT INTO sessions VALUES (${sid}, ${uid}, ${now}, ${now}, ${later}, ${later}, NULL)`)
  const [row] = await d.execute(sql`INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES (${randomBytes(32)}, ${sid}, ${now}, ${later}) RETURNING id`)
  return String(row!.id)
}

async function rotate (d: Driver, tokenId: string): Promise<string> {
  const [found] = await d.execute(sql`SELECT t.id, t.token_hash, t.session_id, t.spent_at, s.user_id, s.expires_at, u.username, u.roles
    FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = s.user_id WHERE t.id = ${tokenId}`)
  if (found === undefined) throw new Error('token not found')
  const sessionId = found.session_id as string
  const now = new Date().toISOString()
  const later = new Date(Date.now() + 86_400_000).toISOString()
  return await d.transaction(async (exec) => {
    const [succ] = await exec(sql`INSERT INTO refresh_tokens (token_hash, session_id, parent_id, created_at, expires_at)
      VALUES (${randomBytes(32)}, ${sessionId}, ${tokenId}, ${now}, ${later}) RETURNING id`)
    const spent = await exec(sql`UPDATE refresh_tokens SET spent_at = ${now}, successor_id = ${succ!.id} WHERE id = ${tokenId} AND spent_at IS NULL RETURNING id`)
    if (spent.length !== 1) throw new Error('already spent')
    await exec(sql`UPDATE sessions SET last_used_at = ${now}, refresh_expires_at = ${later} WHERE id = ${sessionId}`)
    return String(succ!.id)
  })
}

async function round (d: Driver, chains: string[]): Promise<{ perSecond: number, p99: number }> {
  const latencies: number[] = []
  const end = performance.now() + ROUND_MS
  await Promise.all(chains.map(async (_c, i) => {
    while (performance.now() < end) {
      const t0 = performance.now()
      chains[i] = await rotate(d, chains[i]!)
      latencies.push(performance.now() - t0)
    }
  }))
  latencies.sort((a, b) => a - b)
  return { perSecond: latencies.length / (ROUND_MS / 1000), p99: latencies[Math.floor(latencies.length * 0.99)]! }
}

async function main (): Promise<void> {
  await setUp()
  try {
    const drivers = [pgDriver(), postgresJsDriver()]
    const chains = new Map<string, string[]>()
    for (const d of drivers) chains.set(d.name, await Promise.all(Array.from({ length: IN_FLIGHT }, async (_x, i) => await seedChain(d, i))))
    // A short warm-up each, not counted.
    for (const d of drivers) await round(d, chains.get(d.name)!)
    const best = new Map<string, { perSecond: number, p99: number }>()
    for (let r = 0; r < ROUNDS; r++) {
      for (const d of r % 2 === 0 ? drivers : [...drivers].reverse()) {
        const res = await round(d, chains.get(d.name)!)
        console.log(`round ${r + 1} ${d.name.padEnd(8)} ${res.perSecond.toFixed(0)} rotations/s, p99 ${res.p99.toFixed(2)} ms`)
        const prev = best.get(d.name)
        if (prev === undefined || res.perSecond > prev.perSecond) best.set(d.name, res)
      }
    }
    for (const [name, res] of best) console.log(`best     ${name.padEnd(8)} ${res.perSecond.toFixed(0)} rotations/s, p99 ${res.p99.toFixed(2)} ms`)
    for (const d of drivers) await d.close()
  } finally {
    await tearDown()
  }
}

await main().catch((err: unknown) => { console.error(err); process.exitCode = 1 })
