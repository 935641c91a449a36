/**
 * Opens PostgreSQL through node-postgres (`pg`) and Drizzle (docs/decisions/0016-postgres-driver.md).
 *
 * One bounded pool per process (DATABASE_POOL_SIZE): pool size × instances must stay below the
 * server's max_connections (docs/postgres.md). Every connection runs with statement_timeout, so
 * a statement stuck behind a lock answers an error instead of holding a request forever, and
 * connecting is bounded too. A connection the server drops (a restart, a failover) is reported
 * on the query that used it and thrown away; the pool opens new connections for later queries,
 * so the service recovers without a restart.
 */
import { readFileSync } from 'node:fs'
import type { ConnectionOptions } from 'node:tls'
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres'
import pg from 'pg'
import * as schema from './schema.js'

export type PgDb = NodePgDatabase<typeof schema> & { $client: pg.Pool }

export interface PostgresOptions {
  url: string
  poolSize: number
  statementTimeoutMs: number
  ssl: 'disable' | 'require' | 'verify-ca' | 'verify-full'
  /** Path of a PEM file with the CA certificate(s) the server's must chain to. */
  sslCa?: string
  /** Bound on opening one connection (default: the statement timeout, at most 5 s). */
  connectTimeoutMs?: number
  /** Called with an error of an idle connection (the server went away between queries). */
  onIdleError?: (err: Error) => void
}

/** TLS as libpq's sslmode says: require encrypts (and verifies only when a CA is given), verify-* verify. */
function tlsOf (o: PostgresOptions): false | ConnectionOptions {
  if (o.ssl === 'disable') return false
  const ca = o.sslCa === undefined ? undefined : readFileSync(o.sslCa, 'utf8')
  if (o.ssl === 'require' && ca === undefined) return { rejectUnauthorized: false }
  return {
    rejectUnauthorized: true,
    ...(ca === undefined ? {} : { ca }),
    // verify-ca checks the chain but not the name, as libpq does.
    ...(o.ssl === 'verify-ca' ? { checkServerIdentity: () => undefined } : {})
  }
}

export function openPostgres (o: PostgresOptions): { db: PgDb, pool: pg.Pool } {
  const url = new URL(o.url)
  // TLS is decided here from sslmode; pg's own reading of it differs from libpq's.
  url.searchParams.delete('sslmode')
  const pool = new pg.Pool({
    connectionString: url.toString(),
    max: o.poolSize,
    ssl: tlsOf(o),
    connectionTimeoutMillis: o.connectTimeoutMs ?? Math.min(o.statementTimeoutMs, 5000),
    statement_timeout: o.statementTimeoutMs,
    idleTimeoutMillis: 30_000,
    application_name: 'auth-service'
  })
  // Without a listener an idle connection's error (the server restarted) would end the process.
  pool.on('error', (err) => { o.onIdleError?.(err) })
  // The pool listens only while a connection is idle in it. A connection checked out between
  // two statements (a transaction awaiting its next query) that the server ends emits 'error'
  // on the client itself: without this listener that ends the process. The statement in flight
  // or the next one fails (a 503), and the pool drops the broken connection when released.
  pool.on('connect', (client) => { client.on('error', (err) => { o.onIdleError?.(err) }) })
  return { db: drizzle(pool, { schema }), pool }
}
