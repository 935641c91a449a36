/**
 * `npm run bench`: measures the auth service against baselines measured in the same run, and
 * prints every target of the performance issue as met or not met with its ratio.
 *
 * Every server runs as its own process on 127.0.0.1 (the service from dist/, as `npm start`
 * runs it, with NODE_ENV=production, a file database in a temporary folder, production argon2
 * parameters and rate limits raised out of the way); the load comes from autocannon in this
 * process. Each scenario gets a fresh server process, so its peak RSS is its own, and every
 * start is timed (start to ready). Everything is stopped at the end, on failure and on Ctrl-C.
 *
 * Results: bench/results/<stamp>.{json,md,svg} and latest.{json,md,svg}.
 *
 * Settings (environment):
 *   BENCH_ROUNDS        times the whole set of scenarios runs (3; --smoke: 1); each figure is
 *                       the median over the rounds, peak RSS the highest
 *   BENCH_DURATION      seconds measured per scenario (10; --smoke: 0.5)
 *   BENCH_WARMUP        seconds of load before measuring (2; --smoke: 0)
 *   BENCH_CONNECTIONS   concurrent connections (50)
 *   BENCH_SEED_SESSIONS sessions in the large database (1,000,000; --smoke: 20,000)
 *   BENCH_ONLY          comma-separated scenario groups to run (hello, verify, jwks, me, consumer,
 *                       refresh, argon2, login, register; on PostgreSQL pg-refresh, pg-me,
 *                       pg-login, pg-lb, or pg for all four); baselines a target needs are not
 *                       added, except those of the PostgreSQL scenarios
 *   BENCH_PG_SEED_SESSIONS sessions in the PostgreSQL database (100,000; --smoke: 2,000)
 *   BENCH_LOG_LEVEL     the service's LOG_LEVEL (info, the production default)
 *   BENCH_PROFILE=1     start service processes with --cpu-prof (profiles in the run folder)
 *   BENCH_KEEP=1        keep the run folder (databases, logs) instead of deleting it
 * The service's own settings (UV_THREADPOOL_SIZE, DATABASE_SYNCHRONOUS, ARGON2_*, ...) are
 * passed through from the environment, so `DATABASE_SYNCHRONOUS=NORMAL npm run bench` measures that.
 *
 *   npm run bench                     the full run
 *   npm run bench -- --smoke          a short run that checks the harness works (CI)
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os'
import { request } from 'node:http'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadConfig } from '../src/config.js'
import { VERIFIED_TOKENS_CACHED } from '../src/keys/access-tokens.js'
import { BENCH_PASSWORD, ensureSeed, seededToken, seededUsername } from './seed.js'
import { chart } from './lib/chart.js'
import { drive, type LoadResult, type LoadSpec } from './lib/load.js'
import { cpuMsOf, freePort, sampleMemory, start, stopChildrenOnExit, waitReady, type Child } from './lib/proc.js'
import { aggregate, compositeOf, evaluateTargets, markdown, roundRatios, targetLines, type Report, type Round, type Row } from './lib/report.js'
import { cookieToken, Wallet, type Held } from './lib/wallet.js'
import { copyTemplate, dropDatabase, postgresMissing, seedTemplate, startBenchCluster } from './lib/postgres.js'
import { haproxyPath, startHaproxy, startRedis } from './lib/balancer.js'
import type { PostgresCluster } from '../test/support/postgres-cluster.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const smoke = process.argv.includes('--smoke')
const ci = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false' && process.env.CI !== '0'
/** The node flags of package.json's start script (`node <flags> dist/src/server.js`), so the service runs here as `npm start` runs it. */
function startFlags (): string {
  const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts?: Record<string, string> }).scripts ?? {}
  return /\bnode\s+((?:--?[\w-]+(?:=\S+)?\s+)*)dist\/src\/server\.js/.exec(scripts.start ?? '')?.[1]?.trim() ?? ''
}
const envNumber = (name: string, fallback: number): number => {
  const raw = process.env[name]
  if (raw === undefined || raw.trim() === '') return fallback
  const n = Number(raw)
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}: "${raw}" is not a number`)
  return n
}
const opts = {
  rounds: Math.max(1, Math.round(envNumber('BENCH_ROUNDS', smoke ? 1 : 3))),
  duration: envNumber('BENCH_DURATION', smoke ? 0.5 : 10),
  warmup: envNumber('BENCH_WARMUP', smoke ? 0 : 2),
  connections: envNumber('BENCH_CONNECTIONS', 50),
  seedSessions: envNumber('BENCH_SEED_SESSIONS', smoke ? 20_000 : 1_000_000),
  pgSeedSessions: Math.max(2 * 1000, envNumber('BENCH_PG_SEED_SESSIONS', smoke ? 2000 : 100_000)),
  only: process.env.BENCH_ONLY === undefined || process.env.BENCH_ONLY === '' ? null : new Set(process.env.BENCH_ONLY.split(',').map((s) => s.trim())),
  logLevel: process.env.BENCH_LOG_LEVEL ?? 'info',
  profile: process.env.BENCH_PROFILE === '1',
  keep: process.env.BENCH_KEEP === '1',
  /** Node flags for the service's processes: those of `npm start`, unless BENCH_NODE_FLAGS is set. */
  nodeFlags: (process.env.BENCH_NODE_FLAGS ?? startFlags()).split(' ').filter((f) => f !== '')
}
const USERS = 1000
const RSS_LIMIT_MB = 150
const READY_LIMIT_MS = 1000
/** Fixed, so that tokens issued by one server process verify on the next (issuer and Origin). */
const PUBLIC_URL = 'http://localhost:8787'
const KEY_ENCRYPTION_KEY = '6d1f0b4e2a9c8d7e5f3a1b2c4d6e8f0a1c3e5a7b9d1f2a4c6e8a0b2d4f6a8c0e'
const log = (line: string): void => { console.error(line) }

const runDir = mkdtempSync(join(tmpdir(), 'auth-bench-'))
const resultsDir = join(ROOT, 'bench', 'results')
const wanted = (group: string): boolean => opts.only === null || opts.only.has(group) || (group.startsWith('pg-') && opts.only.has('pg'))
const PG_GROUPS = ['pg-refresh', 'pg-me', 'pg-login', 'pg-lb']
/** The throwaway PostgreSQL cluster of the run, when a PostgreSQL scenario is wanted. */
let cluster: PostgresCluster | null = null
/** The current round's rows and starts (main() starts each round with empty ones). */
let rows: Row[] = []
let boots: Report['boots'] = []
let childSeq = 0

/** The argon2 parameters and thread pool the service will use (its own defaults unless overridden). */
const serviceConfig = loadConfig({ ...process.env, NODE_ENV: 'development', DATABASE_URL: ':memory:' })
const threadPool = process.env.UV_THREADPOOL_SIZE ?? String(serviceConfig.threadPoolSize)

// ---------------------------------------------------------------------------------------------
// processes

function ensureBuilt (): void {
  const entry = join(ROOT, 'dist', 'src', 'server.js')
  const built = existsSync(entry) ? statSync(entry).mtimeMs : 0
  const newest = (dir: string): number => {
    let t = 0
    for (const f of readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })) {
      if (/\.(ts|sql|json)$/.test(f)) t = Math.max(t, statSync(join(ROOT, dir, f)).mtimeMs)
    }
    return t
  }
  if (built > 0 && Math.max(...['src', 'plugins', 'routes', 'db', 'packages/verifier/src', 'packages/client/src'].map(newest)) <= built) return
  log('bench: dist/ is missing or older than the sources; running npm run build')
  const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] })
  if (r.status !== 0) throw new Error('npm run build failed')
}

/** `dbPath` is a SQLite file, or a postgres:// URL. */
function serviceEnv (dbPath: string, port: number): NodeJS.ProcessEnv {
  const huge = '1000000000'
  return {
    ...process.env,
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: String(port),
    PUBLIC_URL,
    DATABASE_URL: dbPath.startsWith('postgres://') ? dbPath : `file:${dbPath}`,
    KEY_ENCRYPTION_KEY,
    LOG_LEVEL: opts.logLevel,
    RATE_LIMIT_MAX: huge,
    RATE_LIMIT_LOGIN_MAX: huge,
    RATE_LIMIT_REGISTER_MAX: huge,
    RATE_LIMIT_REFRESH_MAX: huge,
    RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: huge
  }
}

interface Running { child: Child, url: string, port: number }

async function bootService (label: string, dbPath: string, firstBoot = false, extraEnv: NodeJS.ProcessEnv = {}): Promise<Running> {
  const port = await freePort()
  const name = `service-${++childSeq}-${label}`
  const args = [...opts.nodeFlags, ...(opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${join(runDir, 'profiles')}`, `--cpu-prof-name=${name}.cpuprofile`] : [])]
  const startedAt = performance.now()
  const child = start({ name, command: process.execPath, args: [...args, join(ROOT, 'dist', 'src', 'server.js')], env: { ...serviceEnv(dbPath, port), ...extraEnv }, cwd: ROOT, logFile: join(runDir, `${name}.log`) })
  const url = `http://127.0.0.1:${port}`
  const readyMs = await waitReady(child, `${url}/ready`, startedAt)
  boots.push({ label, readyMs, firstBoot })
  return { child, url, port }
}

async function bootScript (label: string, script: string, env: NodeJS.ProcessEnv): Promise<Running> {
  const port = await freePort()
  const name = `${label}-${++childSeq}`
  const startedAt = performance.now()
  const child = start({
    name,
    command: process.execPath,
    args: ['--import', 'tsx', join(ROOT, 'bench', script)],
    env: { ...process.env, ...env, PORT: String(port), NODE_ENV: 'production' },
    cwd: ROOT,
    logFile: join(runDir, `${name}.log`)
  })
  const url = `http://127.0.0.1:${port}`
  await waitReady(child, `${url}/ready`, startedAt)
  return { child, url, port }
}

/** Runs a ceiling loop in its own process and returns the JSON line it prints. */
async function runLoop<T> (label: string, script: string, env: NodeJS.ProcessEnv): Promise<{ result: T, rssMb: number }> {
  const name = `${label}-${++childSeq}`
  const logFile = join(runDir, `${name}.log`)
  const child = start({ name, command: process.execPath, args: ['--import', 'tsx', join(ROOT, 'bench', script)], env: { ...process.env, ...env }, cwd: ROOT, logFile })
  const memory = sampleMemory(child.pid)
  const code = await child.exited
  const peakKb = memory.stop()
  const line = readFileSync(logFile, 'utf8').trim().split('\n').reverse().find((l) => l.startsWith('{'))
  if (code !== 0 || line === undefined) throw new Error(`${label} failed (${String(code)}):\n${child.tail()}`)
  return { result: JSON.parse(line) as T, rssMb: peakKb / 1024 }
}

/**
 * Drives `running` with `spec` while sampling its memory and counting its CPU time; stops it
 * afterwards. CPU time per answer is the figure a busy machine disturbs least.
 */
async function measure (running: Running, spec: Omit<LoadSpec, 'url' | 'connections' | 'duration' | 'warmup'>): Promise<LoadResult & { rssMb: number, cpuMsPerReq: number | null }> {
  const memory = sampleMemory(running.child.pid)
  try {
    const cpuBefore = cpuMsOf(running.child.pid)
    const result = await drive({ url: running.url, connections: opts.connections, duration: opts.duration, warmup: opts.warmup, ...spec })
    const cpuAfter = cpuMsOf(running.child.pid)
    const cpuMsPerReq = cpuBefore === null || cpuAfter === null || result.answeredWithWarmup === 0 ? null : (cpuAfter - cpuBefore) / result.answeredWithWarmup
    return { ...result, rssMb: memory.stop() / 1024, cpuMsPerReq }
  } finally {
    memory.stop()
    await running.child.stop()
  }
}

function addRow (id: string, label: string, kind: Row['kind'], result: LoadResult & { rssMb: number, cpuMsPerReq: number | null }, expect: number, note?: string): Row {
  const row: Row = {
    id, label, kind, rps: result.rps, p50: result.p50, p99: result.p99, statuses: result.statuses, expect, cpuMsPerReq: result.cpuMsPerReq,
    unexpected: result.unexpected, errors: result.errors + result.timeouts, rssMb: result.rssMb, ...(note === undefined ? {} : { note })
  }
  rows.push(row)
  const bad = row.unexpected + row.errors
  log(`  ${label.padEnd(34)} ${result.rps.toFixed(0).padStart(7)} req/s  p50 ${result.p50.toFixed(1).padStart(6)} ms  p99 ${result.p99.toFixed(1).padStart(6)} ms  ` +
    `rss ${result.rssMb.toFixed(0).padStart(4)} MB  cpu ${result.cpuMsPerReq === null ? '–' : result.cpuMsPerReq.toFixed(3)} ms/req${bad > 0 ? `  unexpected: ${JSON.stringify(result.statuses)} errors ${row.errors}` : ''}`)
  return row
}

// ---------------------------------------------------------------------------------------------
// requests

const json = { 'content-type': 'application/json' }

/**
 * One POST on a connection of its own. Not fetch: its pool keeps idle connections to servers
 * this harness has since stopped, and a later server given the same port would see a POST
 * sent down a dead one ("fetch failed").
 */
async function post (url: string, body: unknown): Promise<{ status: number, body: Record<string, unknown> }> {
  const payload = JSON.stringify(body)
  return await new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent: false, headers: { ...json, 'content-length': Buffer.byteLength(payload) } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> })
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)))
        }
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(payload)
  })
}

/**
 * Access tokens for up to `users` distinct users, issued by the service itself: one body-mode
 * refresh per user (the successor refresh token goes back into the wallet).
 */
async function mintAccessTokens (url: string, wallet: Wallet, users: number): Promise<string[]> {
  const picked = wallet.takeDistinctUsers(users)
  const tokens: string[] = []
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < picked.length) {
      const held = picked[next++]!
      const res = await post(`${url}/api/auth/refresh`, { refreshToken: held.token })
      if (res.status !== 200) throw new Error(`minting an access token: refresh answered ${res.status} ${JSON.stringify(res.body)}`)
      tokens.push(String(res.body.accessToken))
      wallet.put({ user: held.user, token: String(res.body.refreshToken) })
    }
  }
  await Promise.all(Array.from({ length: 8 }, worker))
  if (tokens.length < users) log(`  (only ${tokens.length} distinct users had a session left for access tokens)`)
  return tokens
}

function bearerRequests (path: string, tokens: string[]): LoadSpec['requests'] {
  let i = 0
  return [{
    method: 'GET',
    path,
    setupRequest: (request) => ({ ...request, headers: { authorization: `Bearer ${tokens[i++ % tokens.length]!}` } })
  }]
}

/** Every request presents a token never presented before; its successor goes back into the wallet. */
function refreshRequests (wallet: Wallet, mode: 'cookie' | 'body'): LoadSpec['requests'] {
  return [{
    method: 'POST',
    path: '/api/auth/refresh',
    setupRequest: (request, context) => {
      const held = wallet.take()
      context.held = held
      const token = held?.token ?? 'wallet-empty'
      return mode === 'cookie'
        ? { ...request, headers: { origin: PUBLIC_URL, cookie: `refresh_token=${token}` } }
        : { ...request, headers: json, body: JSON.stringify({ refreshToken: token }) }
    },
    onResponse: (status, body, context, headers) => {
      const held = context.held as Held | undefined
      if (status !== 200 || held === undefined) return
      const token = mode === 'cookie' ? cookieToken(headers) : (JSON.parse(body) as { refreshToken?: string }).refreshToken
      if (token !== undefined) wallet.put({ user: held.user, token })
    }
  }]
}

// ---------------------------------------------------------------------------------------------
// the run

interface Db { label: string, path: string, wallet: Wallet }

function copyDb (source: string, file: string, label: string, entries: Held[]): Db {
  const path = join(runDir, `${file}.db`)
  copyFileSync(source, path)
  return { label, path, wallet: new Wallet(entries) }
}

function gitCommit (): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8' }).trim() !== ''
    return dirty ? `${head} (with uncommitted changes)` : head
  } catch {
    return 'unknown'
  }
}

async function main (): Promise<Report> {
  stopChildrenOnExit()
  ensureBuilt()
  const started = new Date()
  const loadBefore = loadavg().map((l) => l.toFixed(2)).join(' ')
  log(`bench: ${smoke ? 'smoke run' : 'full run'}; ${opts.rounds} round${opts.rounds === 1 ? '' : 's'}, ${opts.duration} s per scenario, ${opts.warmup} s warm-up, ${opts.connections} connections; run folder ${runDir}`)

  const argon2 = { memoryCost: serviceConfig.password.memoryCost, timeCost: serviceConfig.password.timeCost, parallelism: serviceConfig.password.parallelism }
  const small = await ensureSeed({ users: USERS, sessions: USERS, argon2 }, log)
  // The large file only when a scenario reads it (it takes a minute to seed the first time).
  const large = wanted('me') || wanted('refresh') ? await ensureSeed({ users: USERS, sessions: opts.seedSessions, argon2 }, log) : small
  const seeds = { small: small.path, large: large.path }
  let pgSeedSeconds: number | null = null
  if (PG_GROUPS.some(wanted)) {
    const missing = postgresMissing()
    const explicit = opts.only !== null
    if (missing !== null && (explicit || ci)) throw new Error(`PostgreSQL scenarios: ${missing}`)
    if (missing !== null) log(`PostgreSQL scenarios skipped: ${missing}`)
    else {
      log(`PostgreSQL: a throwaway cluster (fsync and synchronous_commit on), seeding ${opts.pgSeedSessions.toLocaleString('en')} sessions for ${USERS} users`)
      cluster = await startBenchCluster()
      pgSeedSeconds = await seedTemplate(cluster, { users: USERS, sessions: opts.pgSeedSessions, argon2 })
      log(`  seeded in ${pgSeedSeconds.toFixed(1)} s`)
    }
  }

  const rounds: Round[] = []
  for (let round = 1; round <= opts.rounds; round++) {
    if (opts.rounds > 1) log(`round ${round} of ${opts.rounds}`)
    rows = []
    boots = []
    const composite = await runRound(round, seeds, argon2)
    rounds.push({ rows, boots, composite })
  }
  const aggregated = aggregate(rounds)

  const settings = {
    'node flags': opts.nodeFlags.join(' ') || '(none)',
    UV_THREADPOOL_SIZE: threadPool,
    DATABASE_SYNCHRONOUS: serviceConfig.databaseSynchronous,
    DATABASE_CHECKPOINT: serviceConfig.databaseCheckpoint,
    THREAD_POOL_NICE: serviceConfig.threadPoolNice,
    ARGON2: `m=${argon2.memoryCost},t=${argon2.timeCost},p=${argon2.parallelism}`,
    LOG_LEVEL: opts.logLevel,
    JWT_ALGORITHM: serviceConfig.jwt.algorithm
  }
  const meta = {
    date: started.toISOString(),
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: availableParallelism(),
    node: process.version,
    commit: gitCommit(),
    connections: opts.connections,
    duration: opts.duration,
    warmup: opts.warmup,
    rounds: opts.rounds,
    smoke,
    loadBefore,
    loadAfter: loadavg().map((l) => l.toFixed(2)).join(' '),
    largeSessions: opts.seedSessions,
    seedSeconds: { small: small.seedSeconds, large: large.seedSeconds, ...(pgSeedSeconds === null ? {} : { postgres: Number(pgSeedSeconds.toFixed(1)) }) },
    ...(cluster === null ? {} : { postgres: `${postgresVersion()}, fsync=on, synchronous_commit=on, ${opts.pgSeedSessions} sessions, DATABASE_POOL_SIZE=${serviceConfig.databasePoolSize}` }),
    seconds: Math.round((Date.now() - started.getTime()) / 1000)
  }
  const allBoots = rounds.flatMap((r) => r.boots)
  const targets = evaluateTargets(aggregated.rows, aggregated.composite, allBoots, RSS_LIMIT_MB, READY_LIMIT_MS)
  if (rounds.length > 1) roundRatios(targets, rounds, RSS_LIMIT_MB, READY_LIMIT_MS)
  return { meta, settings, rows: aggregated.rows, composite: aggregated.composite, boots: allBoots, targets, ...(rounds.length > 1 ? { rounds: rounds.map((r) => r.rows) } : {}) }
}

/** Every scenario once, on fresh copies of the seeded databases; answers the round's composite ceilings. */
async function runRound (round: number, seeds: { small: string, large: string }, argon2: { memoryCost: number, timeCost: number, parallelism: number }): Promise<Report['composite']> {
  const largeLabel = opts.seedSessions >= 1_000_000 ? `${opts.seedSessions / 1_000_000}M` : `${Math.round(opts.seedSessions / 1000)}k`
  // 1k: every session (one per user). Large: two sessions per user, spread over the file.
  const db1k = copyDb(seeds.small, `db-1k-r${round}`, 'db-1k', Array.from({ length: USERS }, (_, u) => ({ user: u, token: seededToken(u) })))
  const spread = (u: number, k: number): number => u + USERS * ((u * 7919 + k * 104729) % Math.floor(opts.seedSessions / USERS))
  const dbLarge = copyDb(seeds.large, `db-${largeLabel}-r${round}`, `db-${largeLabel}`, Array.from({ length: 2 * USERS }, (_, i) => {
    const u = i % USERS
    return { user: u, token: seededToken(spread(u, Math.floor(i / USERS))) }
  }))
  const pgName = `bench_r${round}`
  // Two sessions per user, spread over the database, as on the large SQLite file.
  const pgSpread = (u: number, k: number): number => u + USERS * ((u * 7919 + k * 104729) % Math.floor(opts.pgSeedSessions / USERS))
  const pg = cluster === null
    ? null
    : { url: copyTemplate(cluster, pgName), wallet: new Wallet(Array.from({ length: 2 * USERS }, (_, i) => ({ user: i % USERS, token: seededToken(pgSpread(i % USERS, Math.floor(i / USERS))) }))) }
  try {
    return await scenarios(db1k, dbLarge, largeLabel, argon2, pg)
  } finally {
    for (const db of [db1k, dbLarge]) for (const suffix of ['', '-wal', '-shm']) rmSync(db.path + suffix, { force: true })
    if (cluster !== null) dropDatabase(cluster, pgName)
  }
}

async function scenarios (db1k: Db, dbLarge: Db, largeLabel: string, argon2: { memoryCost: number, timeCost: number, parallelism: number }, pg: { url: string, wallet: Wallet } | null): Promise<Report['composite']> {
  // The first start on each copy creates the signing key; every later start is on an existing database.
  for (const db of [db1k, dbLarge]) await (await bootService(`${db.label} first start`, db.path, true)).child.stop()

  const ceilingEnv = { BENCH_DURATION: String(opts.duration), BENCH_WARMUP: String(opts.warmup) }
  let hello = 0
  let fastJwtVerify = 0
  let joseVerify = 0
  let nodeVerify = 0

  if (wanted('hello') || wanted('me') || wanted('jwks') || wanted('consumer') || (pg !== null && wanted('pg-me'))) {
    log('hello-world and raw verification')
    const h = addRow('hello', 'Fastify hello-world', 'baseline', await measure(await bootScript('hello', 'servers/hello.ts', {}), { path: '/', expect: 200 }), 200)
    hello = h.rps
    const { result, rssMb } = await runLoop<{ fastJwtPerSec: number, nodePerSec: number, josePerSec: number }>('verify', 'ceilings/verify.ts', { ...ceilingEnv, BENCH_DURATION: String(Math.min(opts.duration, 5)) })
    fastJwtVerify = result.fastJwtPerSec
    joseVerify = result.josePerSec
    nodeVerify = result.nodePerSec
    rows.push({ id: 'verify-fast-jwt', label: 'raw ES256 verify, fast-jwt (1 core)', kind: 'baseline', rps: fastJwtVerify, p50: null, p99: null, statuses: {}, expect: 0, cpuMsPerReq: null, unexpected: 0, errors: 0, rssMb })
    rows.push({ id: 'verify-node', label: 'raw ES256 verify, node:crypto (1 core)', kind: 'baseline', rps: nodeVerify, p50: null, p99: null, statuses: {}, expect: 0, cpuMsPerReq: null, unexpected: 0, errors: 0, rssMb })
    rows.push({ id: 'verify-jose', label: 'raw ES256 verify, jose (1 core)', kind: 'baseline', rps: joseVerify, p50: null, p99: null, statuses: {}, expect: 0, cpuMsPerReq: null, unexpected: 0, errors: 0, rssMb })
    log(`  raw verify: fast-jwt ${fastJwtVerify.toFixed(0)}/s, node:crypto ${nodeVerify.toFixed(0)}/s, jose ${joseVerify.toFixed(0)}/s`)
  }
  const composite = compositeOf(rows)
  const { me: compositeMe, consumer: compositeConsumer } = composite
  const helloRef = { id: 'hello', label: 'hello-world', rps: hello, p99: rows.find((r) => r.id === 'hello')?.p99 ?? null }

  if (wanted('jwks')) {
    log('JWKS')
    const row = addRow('jwks', 'GET /.well-known/jwks.json', 'service', await measure(await bootService('jwks', db1k.path), { path: '/.well-known/jwks.json', expect: 200 }), 200)
    if (hello > 0) row.baseline = helloRef
  }

  const meRows: Record<string, Row> = {}
  if (wanted('me')) {
    for (const db of [db1k, dbLarge]) {
      log(`/me on ${db.label}`)
      const running = await bootService(`me ${db.label}`, db.path)
      const tokens = await mintAccessTokens(running.url, db.wallet, USERS)
      const id = db === db1k ? 'me-1k' : 'me-1m'
      const row = addRow(id, `GET /me, ${db === db1k ? '1k' : largeLabel} sessions`, 'service', await measure(running, { requests: bearerRequests('/api/auth/me', tokens), expect: 200 }), 200, `${tokens.length} users`)
      meRows[id] = row
      if (id === 'me-1k' && compositeMe > 0) row.baseline = { id: 'composite', label: 'composite ceiling', rps: compositeMe, p99: null }
      if (id === 'me-1m' && meRows['me-1k'] !== undefined) row.baseline = { id: 'me-1k', label: '/me at 1k', rps: meRows['me-1k'].rps, p99: meRows['me-1k'].p99 }
    }
    // The same, with more tokens than the verify cache holds, presented in turn: every request
    // checks a signature (each refresh of a session gives a new access token for it).
    log('/me with more tokens than the verify cache holds')
    const running = await bootService('me uncached', db1k.path)
    const tokens: string[] = []
    while (tokens.length <= VERIFIED_TOKENS_CACHED * 1.2) tokens.push(...await mintAccessTokens(running.url, db1k.wallet, USERS))
    const row = addRow('me-uncached', 'GET /me, 1k sessions, a signature each', 'service', await measure(running, { requests: bearerRequests('/api/auth/me', tokens), expect: 200 }), 200, `${tokens.length} tokens in turn`)
    if (compositeMe > 0) row.baseline = { id: 'composite', label: 'composite ceiling', rps: compositeMe, p99: null }
  }

  if (wanted('consumer')) {
    log('consumer app with the verifier plugin')
    const service = await bootService('consumer issuer', db1k.path)
    try {
      const tokens = await mintAccessTokens(service.url, db1k.wallet, USERS)
      const consumer = await bootScript('consumer', 'servers/consumer.ts', { ISSUER: PUBLIC_URL, JWKS_URL: `${service.url}/.well-known/jwks.json` })
      const row = addRow('consumer', 'consumer app, verifier plugin', 'consumer', await measure(consumer, { requests: bearerRequests('/orders', tokens), expect: 200 }), 200)
      if (compositeConsumer > 0) row.baseline = { id: 'composite-jose', label: 'composite (jose)', rps: compositeConsumer, p99: null }
    } finally {
      await service.child.stop()
    }
  }

  if (wanted('refresh')) {
    const refreshRows: Record<string, Row> = {}
    for (const db of [db1k, dbLarge]) {
      const size = db === db1k ? '1k' : '1m'
      const sizeLabel = db === db1k ? '1k' : largeLabel
      log(`refresh on ${db.label}`)
      const minimalEnv = { DATABASE_URL: `file:${db.path}`, KEY_ENCRYPTION_KEY }
      const minimal = addRow(`minimal-refresh-${size}`, `minimal refresh server, ${sizeLabel} sessions`, 'baseline',
        await measure(await bootScript('minimal-refresh', 'servers/minimal-refresh.ts', minimalEnv), { requests: refreshRequests(db.wallet, 'cookie'), expect: 200 }), 200)
      refreshRows[`minimal-refresh-${size}`] = minimal
      for (const mode of ['cookie', 'body'] as const) {
        const running = await bootService(`refresh ${mode} ${db.label}`, db.path)
        const id = `refresh-${mode}-${size}`
        const row = addRow(id, `POST /refresh (${mode}), ${sizeLabel} sessions`, 'service', await measure(running, { requests: refreshRequests(db.wallet, mode), expect: 200 }), 200)
        refreshRows[id] = row
        const small1k = refreshRows[`refresh-${mode}-1k`]
        row.baseline = size === '1k' || small1k === undefined
          ? { id: minimal.id, label: 'minimal refresh server', rps: minimal.rps, p99: minimal.p99 }
          : { id: small1k.id, label: `${mode} refresh at 1k`, rps: small1k.rps, p99: small1k.p99 }
      }
      if (size === '1m' && refreshRows['minimal-refresh-1k'] !== undefined) {
        const m = refreshRows['minimal-refresh-1k']
        minimal.baseline = { id: m.id, label: 'minimal at 1k', rps: m.rps, p99: m.p99 }
      }
      if (db.wallet.empty > 0) log(`  (the token wallet ran dry ${db.wallet.empty} times)`)
    }
  }

  const argon2Env = {
    ...ceilingEnv,
    UV_THREADPOOL_SIZE: threadPool,
    ARGON2_MEMORY_KIB: String(argon2.memoryCost),
    ARGON2_TIME_COST: String(argon2.timeCost),
    ARGON2_PARALLELISM: String(argon2.parallelism),
    BENCH_CONCURRENCY: String(opts.connections)
  }
  /** Raw argon2id operations per second at the service's parameters and pool size: a baseline row. */
  const argon2Ceiling = async (op: 'verify' | 'hash'): Promise<Row> => {
    const { result, rssMb } = await runLoop<{ opsPerSec: number, p50: number, p99: number }>(`argon2-${op}`, 'ceilings/argon2.ts', { ...argon2Env, BENCH_ARGON2_OP: op })
    const ceiling: Row = { id: `argon2-${op}`, label: `raw argon2id ${op} (${threadPool} threads)`, kind: 'baseline', rps: result.opsPerSec, p50: result.p50, p99: result.p99, statuses: {}, expect: 0, cpuMsPerReq: null, unexpected: 0, errors: 0, rssMb }
    rows.push(ceiling)
    log(`  raw argon2id ${op}: ${result.opsPerSec.toFixed(1)}/s, p99 ${result.p99.toFixed(0)} ms, rss ${rssMb.toFixed(0)} MB`)
    return ceiling
  }
  if (wanted('argon2') || wanted('login')) {
    log('login')
    const ceiling = await argon2Ceiling('verify')
    if (wanted('login')) {
      let n = 0
      const running = await bootService('login', db1k.path)
      const row = addRow('login', 'POST /login (cookie)', 'service', await measure(running, {
        requests: [{
          method: 'POST',
          path: '/api/auth/login',
          setupRequest: (request) => ({ ...request, headers: { ...json, origin: PUBLIC_URL }, body: JSON.stringify({ username: seededUsername(n++ % USERS), password: BENCH_PASSWORD }) })
        }],
        expect: 200
      }), 200)
      row.baseline = { id: ceiling.id, label: 'raw argon2id verify', rps: ceiling.rps, p99: ceiling.p99 }
    }
  }
  if (wanted('register') || wanted('argon2')) {
    log('register')
    const ceiling = await argon2Ceiling('hash')
    if (wanted('register')) {
      const tag = Date.now().toString(36)
      let n = 0
      const running = await bootService('register', db1k.path)
      const row = addRow('register', 'POST /register', 'service', await measure(running, {
        requests: [{
          method: 'POST',
          path: '/api/auth/register',
          setupRequest: (request) => ({ ...request, headers: json, body: JSON.stringify({ username: `reg-${tag}-${n++}`, password: BENCH_PASSWORD }) })
        }],
        expect: 201
      }), 201)
      row.baseline = { id: ceiling.id, label: 'raw argon2id hash', rps: ceiling.rps, p99: ceiling.p99 }
    }
  }

  if (pg !== null) await postgresScenarios(pg, compositeMe, argon2Ceiling)

  return composite
}

/**
 * The PostgreSQL scenarios, on this round's copy of the seeded database: refresh in both modes
 * against the minimal PostgreSQL refresh server, /me against the composite ceiling, login
 * against the argon2id ceiling, then one and two instances behind HAProxy.
 */
async function postgresScenarios (pg: { url: string, wallet: Wallet }, compositeMe: number, argon2Ceiling: (op: 'verify' | 'hash') => Promise<Row>): Promise<void> {
  // The first start creates the signing key and seals the server secret.
  await (await bootService('postgres first start', pg.url, true)).child.stop()

  if (wanted('pg-refresh')) {
    log('refresh on PostgreSQL')
    const minimal = addRow('pg-minimal-refresh', 'minimal refresh server, PostgreSQL', 'baseline',
      await measure(await bootScript('minimal-refresh-pg', 'servers/minimal-refresh-pg.ts', { DATABASE_URL: pg.url, KEY_ENCRYPTION_KEY }), { requests: refreshRequests(pg.wallet, 'cookie'), expect: 200 }), 200)
    for (const mode of ['cookie', 'body'] as const) {
      const row = addRow(`pg-refresh-${mode}`, `POST /refresh (${mode}), PostgreSQL`, 'service',
        await measure(await bootService(`pg refresh ${mode}`, pg.url), { requests: refreshRequests(pg.wallet, mode), expect: 200 }), 200)
      row.baseline = { id: minimal.id, label: 'minimal PostgreSQL refresh server', rps: minimal.rps, p99: minimal.p99 }
    }
    if (pg.wallet.empty > 0) log(`  (the token wallet ran dry ${pg.wallet.empty} times)`)
  }

  if (wanted('pg-me')) {
    log('/me on PostgreSQL')
    const running = await bootService('pg me', pg.url)
    const tokens = await mintAccessTokens(running.url, pg.wallet, USERS)
    const row = addRow('pg-me', 'GET /me, PostgreSQL', 'service', await measure(running, { requests: bearerRequests('/api/auth/me', tokens), expect: 200 }), 200, `${tokens.length} users`)
    if (compositeMe > 0) row.baseline = { id: 'composite', label: 'composite ceiling', rps: compositeMe, p99: null }
  }

  if (wanted('pg-login')) {
    log('login on PostgreSQL')
    const ceiling = rows.find((r) => r.id === 'argon2-verify') ?? await argon2Ceiling('verify')
    let n = 0
    const row = addRow('pg-login', 'POST /login (cookie), PostgreSQL', 'service', await measure(await bootService('pg login', pg.url), {
      requests: [{
        method: 'POST',
        path: '/api/auth/login',
        setupRequest: (request) => ({ ...request, headers: { ...json, origin: PUBLIC_URL }, body: JSON.stringify({ username: seededUsername(n++ % USERS), password: BENCH_PASSWORD }) })
      }],
      expect: 200
    }), 200)
    row.baseline = { id: ceiling.id, label: 'raw argon2id verify', rps: ceiling.rps, p99: ceiling.p99 }
  }

  if (wanted('pg-lb')) {
    if (haproxyPath() === null) {
      if (ci || opts.only !== null) throw new Error('the two-instance scenario needs HAProxy (apt-get install haproxy)')
      log('one and two instances behind HAProxy: skipped, HAProxy is missing (apt-get install haproxy)')
      return
    }
    const redis = await startRedis(runDir)
    try {
      log(`one and two instances on PostgreSQL${redis === null ? '' : ' and Redis'}, behind HAProxy`)
      const shared = redis === null ? {} : { REDIS_URL: redis.url }
      const setting = redis === null ? 'no Redis' : 'Redis'
      for (const workload of ['refresh', 'me'] as const) {
        let one: Row | undefined
        for (const count of [1, 2]) {
          const instances: Running[] = []
          for (let i = 1; i <= count; i++) instances.push(await bootService(`pg lb ${workload} ${i} of ${count}`, pg.url, false, shared))
          const lb = await startHaproxy(runDir, instances.map((r) => r.port))
          const spec = workload === 'refresh'
            ? { requests: refreshRequests(pg.wallet, 'cookie'), expect: 200 }
            : { requests: bearerRequests('/api/auth/me', await mintAccessTokens(instances[0]!.url, pg.wallet, USERS)), expect: 200 }
          const label = `${workload === 'refresh' ? 'POST /refresh (cookie)' : 'GET /me'}, PostgreSQL, ${count === 1 ? 'one instance' : 'two instances'} behind HAProxy`
          const row = addRow(`pg-lb-${workload}-${count}`, label, 'service', await measureBehind(lb, instances, spec), 200, setting)
          if (count === 1) one = row
          else if (one !== undefined) row.baseline = { id: one.id, label: 'one instance', rps: one.rps, p99: one.p99 }
        }
      }
    } finally {
      await redis?.child.stop()
    }
  }
}

/**
 * Drives the balancer and measures the instances behind it: CPU per answer added up over the
 * instances, the highest peak RSS of any one of them. Stops all of them and the balancer.
 */
async function measureBehind (lb: { child: Child, url: string }, instances: Running[], spec: Omit<LoadSpec, 'url' | 'connections' | 'duration' | 'warmup'>): Promise<LoadResult & { rssMb: number, cpuMsPerReq: number | null }> {
  const memories = instances.map((r) => sampleMemory(r.child.pid))
  try {
    const cpu = (): number | null => instances.reduce<number | null>((sum, r) => { const c = cpuMsOf(r.child.pid); return sum === null || c === null ? null : sum + c }, 0)
    const cpuBefore = cpu()
    const result = await drive({ url: lb.url, connections: opts.connections, duration: opts.duration, warmup: opts.warmup, ...spec })
    const cpuAfter = cpu()
    const cpuMsPerReq = cpuBefore === null || cpuAfter === null || result.answeredWithWarmup === 0 ? null : (cpuAfter - cpuBefore) / result.answeredWithWarmup
    return { ...result, rssMb: Math.max(...memories.map((m) => m.stop())) / 1024, cpuMsPerReq }
  } finally {
    for (const m of memories) m.stop()
    await Promise.all(instances.map(async (r) => await r.child.stop()))
    await lb.child.stop()
  }
}

async function stopCluster (): Promise<void> {
  await cluster?.stop()
}

function postgresVersion (): string {
  try {
    return cluster?.psql('SHOW server_version').replace(/\s.*$/, '').replace(/^/, 'PostgreSQL ') ?? 'none'
  } catch {
    return 'PostgreSQL'
  }
}

function write (report: Report): string[] {
  mkdirSync(resultsDir, { recursive: true })
  const stamp = String(report.meta.date).replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z') + (smoke ? '-smoke' : '')
  const title = `auth service vs same-run baselines — ${String(report.meta.date).slice(0, 16).replace('T', ' ')} UTC${smoke ? ' (smoke run)' : ''}`
  const files: Record<string, string> = {
    json: JSON.stringify(report, null, 2) + '\n',
    md: markdown(report),
    svg: chart(report.rows, title)
  }
  const written: string[] = []
  for (const [ext, content] of Object.entries(files)) {
    for (const name of [`${stamp}.${ext}`, `${smoke ? 'smoke' : 'latest'}.${ext}`]) {
      writeFileSync(join(resultsDir, name), content)
      written.push(join('bench', 'results', name))
    }
  }
  return written
}

let exitCode = 0
try {
  const report = await main()
  const files = write(report)
  console.log('')
  console.log(markdown(report))
  for (const line of targetLines(report.targets)) console.log(line)
  const met = report.targets.filter((t) => t.met).length
  console.log(`\nbench: ${met} of ${report.targets.length} targets met; results in ${files.filter((f) => !/\/(latest|smoke)\.[a-z]+$/.test(f)).join(', ')}`)
  // A smoke run checks the harness, not the figures: every scenario must have answered correctly.
  const silent = report.rows.filter((r) => r.expect !== 0 && r.rps === 0)
  if (silent.length > 0) {
    console.error(`bench: no correct answer in ${silent.map((r) => r.id).join(', ')}`)
    exitCode = 1
  }
} catch (err) {
  console.error(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`)
  exitCode = 1
} finally {
  await stopCluster()
  if (!opts.keep && exitCode === 0) rmSync(runDir, { recursive: true, force: true })
  else console.error(`bench: run folder kept at ${runDir}`)
}
process.exit(exitCode)
