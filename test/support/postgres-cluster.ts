/**
 * A throwaway PostgreSQL cluster on loopback, for the test suite's PostgreSQL pass
 * (scripts/test.ts) and for tests that need a server of their own: `initdb` into a fresh temp
 * directory, `pg_ctl start` on 127.0.0.1 and a free port (its Unix socket in that directory, so
 * nothing outside it is touched), trust authentication for the `postgres` superuser.
 *
 * Invariants:
 * - No server outlives its owner. `stop()` shuts it down (fast, then immediate) and removes the
 *   directory within a bounded time; and a watchdog process started with the cluster does the
 *   same once the owning process has gone, whatever killed it (SIGKILL included), since
 *   `pg_ctl` detaches the server from the process that started it.
 * - initdb and the server refuse to run as root: as root, they run as the `postgres` user
 *   (`runuser`) in a directory that user owns.
 * - Every DDL statement is logged (`log_statement=ddl`) to `logFile`, so that a caller can tell
 *   afterwards whether anything really created databases or tables on this cluster.
 */
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process'
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface PostgresCluster {
  /** Superuser URL of the `postgres` database: postgres://postgres@127.0.0.1:PORT/postgres */
  url: string
  port: number
  dir: string
  /** The server's log (connections refused, errors, and every DDL statement). */
  logFile: string
  bin: string
  /** Runs SQL through psql as the superuser on `database`; returns its unaligned, tuples-only output. */
  psql: (sql: string, database?: string) => string
  /**
   * Stops the server (`mode`: fast ends open connections, immediate is a crash), waits
   * `downMs`, and starts it again on the same port and data: an outage the clients must ride out.
   */
  restart: (mode?: 'fast' | 'immediate', downMs?: number) => Promise<void>
  /** Stops the server and removes its directory; safe to call twice. */
  stop: () => Promise<void>
}

export interface ClusterOptions {
  /** Where initdb, pg_ctl, postgres and psql are (default: findPostgresBin()). */
  bin?: string
  /** max_connections (default 300: parallel test files, each with its pool and admin connections). */
  maxConnections?: number
  /** More `-c name=value` settings. */
  settings?: Record<string, string>
}

const DEFAULT_SEARCH = '/usr/lib/postgresql'

/**
 * The directory holding initdb and pg_ctl: `POSTGRES_BIN` if set, else the newest
 * /usr/lib/postgresql/N/bin (Debian, Ubuntu), else `pg_config --bindir`, else the directory of an
 * initdb on PATH. Returns an explanation instead when there is none.
 */
export function findPostgresBin (env: NodeJS.ProcessEnv = process.env): { bin: string } | { missing: string } {
  const has = (dir: string): boolean => existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'))
  if (env.POSTGRES_BIN !== undefined && env.POSTGRES_BIN !== '') {
    return has(env.POSTGRES_BIN) ? { bin: env.POSTGRES_BIN } : { missing: `POSTGRES_BIN=${env.POSTGRES_BIN} holds no initdb and pg_ctl` }
  }
  if (existsSync(DEFAULT_SEARCH)) {
    const versions = readdirSync(DEFAULT_SEARCH).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))
    for (const v of versions) {
      const dir = join(DEFAULT_SEARCH, v, 'bin')
      if (has(dir)) return { bin: dir }
    }
  }
  const pgConfig = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' })
  if (pgConfig.status === 0 && has(pgConfig.stdout.trim())) return { bin: pgConfig.stdout.trim() }
  const which = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' })
  if (which.status === 0) {
    const dir = which.stdout.trim().replace(/\/initdb$/, '')
    if (has(dir)) return { bin: dir }
  }
  return { missing: `no PostgreSQL server binaries (initdb, pg_ctl) in ${DEFAULT_SEARCH}/*/bin, from pg_config or on PATH (Debian: apt-get install postgresql; elsewhere set POSTGRES_BIN to their directory)` }
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/** Quotes one word for sh. */
const sq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

export async function startPostgresCluster (options: ClusterOptions = {}): Promise<PostgresCluster> {
  const found = options.bin !== undefined ? { bin: options.bin } : findPostgresBin()
  if (!('bin' in found)) throw new Error(found.missing)
  const bin = found.bin
  const asRoot = process.getuid?.() === 0
  // As root, every server command runs as `postgres`; its own environment, not the caller's
  // (no PGDATA, PGPORT or PGHOST of the caller leaks in).
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' }
  const command = (program: string, args: string[]): [string, string[]] =>
    asRoot ? ['runuser', ['-u', 'postgres', '--', join(bin, program), ...args]] : [join(bin, program), args]
  const run = (program: string, args: string[], timeoutMs: number): SpawnSyncReturns<string> => {
    const [file, argv] = command(program, args)
    return spawnSync(file, argv, { env, encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL' })
  }

  const dir = mkdtempSync(join(tmpdir(), 'auth-pg-'))
  if (asRoot) {
    const id = (flag: string): number => Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim())
    const uid = id('-u')
    const gid = id('-g')
    if (!Number.isInteger(uid) || uid <= 0) {
      rmSync(dir, { recursive: true, force: true })
      throw new Error('running as root, and there is no `postgres` user to run the server as (initdb refuses root)')
    }
    chownSync(dir, uid, gid)
  }
  const data = join(dir, 'data')
  const logFile = join(dir, 'server.log')

  const init = run('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C'], 60_000)
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`initdb failed (exit ${String(init.status ?? init.signal)}): ${init.stderr.trim() || init.stdout.trim()}`)
  }

  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: dir,
    max_connections: String(options.maxConnections ?? 300),
    // A throwaway cluster: nothing is worth an fsync.
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    log_statement: 'ddl',
    log_line_prefix: '%m [%p] %d ',
    ...options.settings
  }
  // In postgresql.conf rather than on pg_ctl's -o, which a shell splits at spaces.
  appendFileSync(join(data, 'postgresql.conf'), '\n' + Object.entries(settings).map(([k, v]) => `${k} = '${v.replace(/'/g, "''")}'\n`).join(''))

  // The watchdog: once the owning process has gone, stop the server at once and remove the
  // directory. Detached, so that it survives the owner's death; killed by stop().
  const stopCommand = [...command('pg_ctl', ['stop', '-D', data, '-m', 'immediate', '-t', '10'])].flat().map(sq).join(' ')
  const watchdog = spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; ${stopCommand} >/dev/null 2>&1; rm -rf ${sq(dir)}`], {
    detached: true,
    stdio: 'ignore',
    env
  })
  watchdog.unref()

  let port = 0
  let started = false
  let lastError = ''
  // The free port is free when asked, not necessarily when the server binds it: try again.
  for (let attempt = 0; attempt < 3 && !started; attempt++) {
    port = await freePort()
    const start = run('pg_ctl', ['-D', data, '-l', logFile, '-o', `-p ${port}`, '-w', '-t', '30', 'start'], 40_000)
    started = start.status === 0
    if (!started) {
      lastError = `${start.stderr.trim()} ${existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-10).join('\n') : ''}`
      run('pg_ctl', ['stop', '-D', data, '-m', 'immediate', '-t', '10'], 15_000)
    }
  }
  if (!started) {
    if (watchdog.pid !== undefined) try { process.kill(watchdog.pid) } catch {}
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`pg_ctl start failed: ${lastError}`)
  }

  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    if (watchdog.pid !== undefined) try { process.kill(watchdog.pid) } catch {}
    // Fast shutdown ends open connections; immediate if that does not finish in 10 s.
    const fast = run('pg_ctl', ['stop', '-D', data, '-m', 'fast', '-t', '10'], 15_000)
    if (fast.status !== 0) run('pg_ctl', ['stop', '-D', data, '-m', 'immediate', '-t', '10'], 15_000)
    rmSync(dir, { recursive: true, force: true })
  }

  const psql = (sql: string, database = 'postgres'): string => {
    const r = spawnSync(join(bin, 'psql'), ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', database, '-c', sql], {
      env, encoding: 'utf8', timeout: 30_000, killSignal: 'SIGKILL'
    })
    if (r.status !== 0) throw new Error(`psql failed: ${r.stderr.trim()}`)
    return r.stdout.trim()
  }

  const restart = async (mode: 'fast' | 'immediate' = 'fast', downMs = 0): Promise<void> => {
    const down = run('pg_ctl', ['stop', '-D', data, '-m', mode, '-t', '10'], 15_000)
    if (down.status !== 0) throw new Error(`pg_ctl stop failed: ${down.stderr.trim()}`)
    if (downMs > 0) await new Promise((resolve) => setTimeout(resolve, downMs))
    const up = run('pg_ctl', ['-D', data, '-l', logFile, '-o', `-p ${port}`, '-w', '-t', '30', 'start'], 40_000)
    if (up.status !== 0) throw new Error(`pg_ctl start failed: ${up.stderr.trim()}`)
  }

  return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, port, dir, logFile, bin, psql, restart, stop }
}

/**
 * What the log of a cluster started here says was created on it: CREATE DATABASE, CREATE SCHEMA
 * and CREATE TABLE statements (each statement counted once, however many a query string held).
 */
export function createdObjects (logFile: string): { databases: number, schemas: number, tables: number } {
  const text = existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''
  const count = (re: RegExp): number => text.match(re)?.length ?? 0
  return {
    databases: count(/\bcreate\s+database\b/gi),
    schemas: count(/\bcreate\s+schema\b/gi),
    tables: count(/\bcreate\s+(?:unlogged\s+)?table\b/gi)
  }
}
