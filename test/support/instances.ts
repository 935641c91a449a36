/**
 * Several service processes (src/server.ts) on one database and one Redis, stopped at teardown.
 * The database is the pass's backend: in the PostgreSQL pass (TEST_DATABASE=postgres) a cluster
 * of the suite's own, so that a test can restart it under load; otherwise one SQLite file.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { TEST_DATABASE } from './app.js'
import { startPostgresCluster, type PostgresCluster } from './postgres-cluster.js'
import { serverEnv, startServer, type ServerProcess } from './process.js'

export interface Backend {
  kind: 'sqlite' | 'postgres'
  /** The suite's own PostgreSQL cluster (PostgreSQL pass only). */
  cluster: PostgresCluster | null
  /** A new, empty database: its DATABASE_URL. */
  newDatabase: () => string
}

export async function startBackend (t: Test): Promise<Backend> {
  const dir = mkdtempSync(join(tmpdir(), 'auth-instances-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  if (TEST_DATABASE !== 'postgres') {
    return { kind: 'sqlite', cluster: null, newDatabase: () => `file:${join(dir, `auth-${randomBytes(4).toString('hex')}.db`)}` }
  }
  const cluster = await startPostgresCluster()
  t.teardown(async () => { await cluster.stop() })
  return {
    kind: 'postgres',
    cluster,
    newDatabase: () => {
      const name = `auth_${randomBytes(4).toString('hex')}`
      cluster.psql(`CREATE DATABASE ${name}`)
      return `postgres://postgres@127.0.0.1:${cluster.port}/${name}`
    }
  }
}

export interface Instances {
  servers: ServerProcess[]
  /** The settings every instance runs with (for the CLIs on the same database). */
  env: Record<string, string>
  kill: (index: number, signal?: NodeJS.Signals) => Promise<void>
}

/** `count` processes on a new database of `backend`, with `overrides` (REDIS_URL, limits...). */
export async function startInstances (t: Test, backend: Backend, count: number, overrides: Record<string, string> = {}): Promise<Instances> {
  const env = { ...serverEnv('', overrides), DATABASE_URL: backend.newDatabase() }
  const servers: ServerProcess[] = []
  t.teardown(async () => { await Promise.all(servers.map(async (s) => await s.kill())) })
  // The first creates the schema and the first key; the others start together on it.
  servers.push(await startServer(env))
  servers.push(...await Promise.all(Array.from({ length: count - 1 }, async () => await startServer(env))))
  return {
    servers,
    env,
    kill: async (index, signal = 'SIGKILL') => { await servers[index]!.kill(signal) }
  }
}
