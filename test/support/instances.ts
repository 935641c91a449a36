/**
 * Several service processes (src/server.ts) on one database: the pass's backend (a fresh
 * PostgreSQL database in the PostgreSQL pass, one SQLite file otherwise), stopped at teardown.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { serverEnv, startServer, type ServerProcess } from './process.js'

export interface Instances {
  servers: ServerProcess[]
  /** The settings every instance runs with (for the CLIs on the same database). */
  env: Record<string, string>
  kill: (index: number, signal?: NodeJS.Signals) => Promise<void>
}

export async function startInstances (t: Test, count: number, overrides: Record<string, string> = {}): Promise<Instances> {
  const dir = mkdtempSync(join(tmpdir(), 'auth-instances-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const env = serverEnv(join(dir, 'auth.db'), overrides)
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
