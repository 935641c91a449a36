/**
 * Soak: a bounded mixed load against the real server in a child process, watching for errors
 * and memory growth. Not part of the test suite.
 *
 *   npm run soak                              60 s, defaults below
 *   npm run soak -- --duration 15             a short run
 *   SOAK_DURATION=300 npm run soak            five minutes, set by environment
 *
 * Options (flag or environment): --duration / SOAK_DURATION seconds (60), --concurrency /
 * SOAK_CONCURRENCY clients (4), --rate / SOAK_RATE total requests per second, paced (150; 0
 * means as fast as the clients go), --users / SOAK_USERS accounts (20), --dist / SOAK_DIST=1
 * to run the built dist/src/server.js instead of src/server.ts through tsx.
 *
 * The server runs production-like: NODE_ENV=production, production argon2id parameters, a file
 * database in a temporary directory, info logging, rate limits on but raised far above the
 * load (one client address sends everything). The mix: logins 10 %, refreshes 30 %, GET /me
 * 40 %, JWKS 20 %, each client on its own body-mode session.
 *
 * Reported: requests and errors by operation and status, latency percentiles, the server's
 * RSS over time (from /proc, every second) and its trend after a warm-up: the Theil–Sen slope
 * of the RSS floor (the lowest sample of every few seconds). RSS jumps for a moment whenever
 * several argon2id hashes (19 MiB each) or a garbage-collection cycle overlap; such spikes do
 * not move the floor, while a leak lifts it. The slopes of all samples are printed beside it.
 * Verdict `soak: PASS` when there is no 5xx, no failed request, no unexpected status, a clean
 * exit on SIGTERM, and no memory growth trend; otherwise `soak: FAIL` and exit code 1. A
 * trend is a floor slope above SOAK_MAX_SLOPE MB/min (default 2) that also adds up to more than
 * SOAK_MAX_GROWTH % (default 2) of the floor over the measured window: the heap still grows
 * for a while after the warm-up, which in a short run is a steep slope of a few MB. So the
 * longer the run, the smaller the leak it catches (at 60 s about 5 MB/min, at 5 min about
 * 1 MB/min on a 180 MB process).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

const { values: flags } = parseArgs({
  options: {
    duration: { type: 'string' },
    concurrency: { type: 'string' },
    rate: { type: 'string' },
    users: { type: 'string' },
    dist: { type: 'boolean' }
  }
})
const num = (flag: string | undefined, env: string | undefined, fallback: number): number => {
  const v = Number(flag ?? env ?? fallback)
  if (!Number.isFinite(v) || v < 0) throw new Error(`not a number: ${String(flag ?? env)}`)
  return v
}
const DURATION_S = num(flags.duration, process.env.SOAK_DURATION, 60)
const CONCURRENCY = Math.max(1, num(flags.concurrency, process.env.SOAK_CONCURRENCY, 4))
const RATE = num(flags.rate, process.env.SOAK_RATE, 150)
const USERS = Math.max(1, num(flags.users, process.env.SOAK_USERS, 20))
const DIST = flags.dist === true || process.env.SOAK_DIST === '1'
const MAX_SLOPE = num(undefined, process.env.SOAK_MAX_SLOPE, 2)
const MAX_GROWTH_PCT = num(undefined, process.env.SOAK_MAX_GROWTH, 2)
const PASSWORD = 'soak test passphrase, long enough'

// ---------------------------------------------------------------- the server

const dir = mkdtempSync(join(tmpdir(), 'auth-soak-'))
let child: ChildProcess | undefined

function cleanUp (): void {
  if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
}
process.on('exit', cleanUp)
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => { cleanUp(); process.exit(130) })

async function startServer (): Promise<{ base: string, pid: number, exited: Promise<unknown> }> {
  const entry = DIST ? [join(ROOT, 'dist', 'src', 'server.js')] : ['--import', 'tsx', join(ROOT, 'src', 'server.ts')]
  const unlimited = '1000000'
  child = spawn(process.execPath, entry, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: '0',
      PUBLIC_URL: 'http://127.0.0.1:3000',
      DATABASE_URL: `file:${join(dir, 'auth.db')}`,
      KEY_ENCRYPTION_KEY: randomBytes(32).toString('hex'),
      LOG_LEVEL: 'info',
      RATE_LIMIT_MAX: unlimited,
      RATE_LIMIT_LOGIN_MAX: unlimited,
      RATE_LIMIT_REGISTER_MAX: unlimited,
      RATE_LIMIT_REFRESH_MAX: unlimited,
      RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: unlimited
    }
  })
  const exited = once(child, 'exit')
  let errText = ''
  child.stderr!.setEncoding('utf8').on('data', (c: string) => { errText = (errText + c).slice(-4000) })
  const lines = createInterface({ input: child.stdout! })
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`server did not start in 60 s: ${errText}`)) }, 60_000)
    lines.on('line', (line) => {
      const m = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(line)
      if (m !== null) { clearTimeout(timer); resolve(Number(m[1])) }
    })
    void exited.then(() => { clearTimeout(timer); reject(new Error(`server exited before listening: ${errText}`)) })
  })
  lines.removeAllListeners('line')
  lines.on('line', () => {}) // keep draining the request log
  return { base: `http://127.0.0.1:${port}`, pid: child.pid!, exited }
}

function rssMb (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN)
  return kb / 1024
}

// ---------------------------------------------------------------- the load

type Op = 'login' | 'refresh' | 'me' | 'jwks'
const MIX: Array<[Op, number]> = [['login', 0.1], ['refresh', 0.3], ['me', 0.4], ['jwks', 0.2]]
const EXPECTED: Record<Op, number[]> = { login: [200], refresh: [200], me: [200], jwks: [200] }

const counts = new Map<string, number>() // "op status" → n
const latencies: Record<Op, number[]> = { login: [], refresh: [], me: [], jwks: [] }
let failures = 0
let unexpected = 0
const firstProblems: string[] = []

function note (op: Op, status: number | 'network', ms: number, detail = ''): void {
  const key = `${op} ${status}`
  counts.set(key, (counts.get(key) ?? 0) + 1)
  latencies[op].push(ms)
  if (status === 'network') failures++
  else if (!EXPECTED[op].includes(status)) unexpected++
  if ((status === 'network' || !EXPECTED[op].includes(status as number)) && firstProblems.length < 10) firstProblems.push(`${key} ${detail}`.slice(0, 200))
}

async function request (base: string, op: Op, path: string, init: RequestInit = {}): Promise<{ status: number, json: any }> {
  const t0 = performance.now()
  try {
    const res = await fetch(base + path, init)
    const text = await res.text()
    note(op, res.status, performance.now() - t0, res.status === 200 ? '' : text)
    return { status: res.status, json: text === '' ? undefined : JSON.parse(text) }
  } catch (err) {
    note(op, 'network', performance.now() - t0, String(err))
    return { status: 0, json: undefined }
  }
}

const json = (body: unknown): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

async function worker (base: string, id: number, deadline: number): Promise<void> {
  const username = `soak-user-${id % USERS}`
  let session = (await request(base, 'login', '/api/auth/login', json({ username, password: PASSWORD, transport: 'body' }))).json
  const interval = RATE > 0 ? 1000 * CONCURRENCY / RATE : 0
  let next = performance.now()
  while (Date.now() < deadline) {
    const r = Math.random()
    let acc = 0
    const op = MIX.find(([, w]) => (acc += w) > r)?.[0] ?? 'me'
    if (op === 'login' || session?.refreshToken === undefined) {
      const res = await request(base, 'login', '/api/auth/login', json({ username: `soak-user-${Math.floor(Math.random() * USERS)}`, password: PASSWORD, transport: 'body' }))
      if (res.status === 200) session = res.json
    } else if (op === 'refresh') {
      const res = await request(base, 'refresh', '/api/auth/refresh', json({ refreshToken: session.refreshToken }))
      if (res.status === 200) session = res.json
    } else if (op === 'me') {
      await request(base, 'me', '/api/auth/me', { headers: { authorization: `Bearer ${String(session.accessToken)}` } })
    } else {
      await request(base, 'jwks', '/.well-known/jwks.json')
    }
    if (interval > 0) {
      next += interval
      const wait = next - performance.now()
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
      else if (wait < -1000) next = performance.now() // fell behind: do not burst to catch up
    }
  }
}

// ---------------------------------------------------------------- statistics

function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
}

/** Least-squares slope of y over x. */
function leastSquaresSlope (points: Array<[number, number]>): number {
  const n = points.length
  if (n < 2) return 0
  const mx = points.reduce((s, [x]) => s + x, 0) / n
  const my = points.reduce((s, [, y]) => s + y, 0) / n
  const sxy = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0)
  const sxx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0)
  return sxx === 0 ? 0 : sxy / sxx
}

/** Theil–Sen slope: the median of the slopes between every pair of points (robust to outliers). */
function robustSlope (points: Array<[number, number]>): number {
  const slopes: number[] = []
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) {
      const dx = points[j]![0] - points[i]![0]
      if (dx > 0) slopes.push((points[j]![1] - points[i]![1]) / dx)
    }
  }
  slopes.sort((a, b) => a - b)
  return slopes.length === 0 ? 0 : slopes[Math.floor(slopes.length / 2)]!
}

// ---------------------------------------------------------------- main

console.log(`soak: ${DURATION_S} s, ${CONCURRENCY} clients, ${RATE > 0 ? `${RATE} req/s` : 'unpaced'}, ${USERS} users, server from ${DIST ? 'dist' : 'src (tsx)'}`)
const server = await startServer()
console.log(`soak: server pid ${server.pid} at ${server.base}; RSS ${rssMb(server.pid).toFixed(1)} MB before load`)

for (let i = 0; i < USERS; i += 4) {
  await Promise.all(Array.from({ length: Math.min(4, USERS - i) }, async (_, j) => {
    const res = await fetch(`${server.base}/api/auth/register`, json({ username: `soak-user-${i + j}`, password: PASSWORD }))
    if (res.status !== 201) throw new Error(`could not register soak-user-${i + j}: ${res.status} ${await res.text()}`)
  }))
}

const samples: Array<[number, number]> = [] // [seconds since start, RSS MB]
const started = Date.now()
const deadline = started + DURATION_S * 1000
let lastTotal = 0
const sampler = setInterval(() => {
  const t = (Date.now() - started) / 1000
  const rss = rssMb(server.pid)
  samples.push([t, rss])
  if (samples.length % 5 === 0) {
    const total = [...counts.values()].reduce((a, b) => a + b, 0)
    console.log(`soak: t=${t.toFixed(0).padStart(4)} s  RSS ${rss.toFixed(1).padStart(6)} MB  ${((total - lastTotal) / 5).toFixed(0).padStart(5)} req/s  5xx ${[...counts].filter(([k]) => / 5\d\d$/.test(k)).reduce((a, [, n]) => a + n, 0)}`)
    lastTotal = total
  }
}, 1000)
await Promise.all(Array.from({ length: CONCURRENCY }, async (_, id) => { await worker(server.base, id, deadline) }))
clearInterval(sampler)
const elapsed = (Date.now() - started) / 1000

child!.kill('SIGTERM')
const [exitCode] = await server.exited as [number | null]

// ---------------------------------------------------------------- report

const total = [...counts.values()].reduce((a, b) => a + b, 0)
console.log(`\nsoak: ${total} requests in ${elapsed.toFixed(1)} s (${(total / elapsed).toFixed(0)} req/s)`)
console.log('soak: by operation and status')
for (const [key, n] of [...counts].sort()) console.log(`  ${key.padEnd(16)} ${String(n).padStart(8)}`)
console.log('soak: latency ms (p50 / p90 / p99 / max)')
for (const op of Object.keys(latencies) as Op[]) {
  const sorted = latencies[op].sort((a, b) => a - b)
  if (sorted.length > 0) console.log(`  ${op.padEnd(8)} ${[0.5, 0.9, 0.99].map((p) => percentile(sorted, p).toFixed(1)).join(' / ')} / ${sorted[sorted.length - 1]!.toFixed(1)}`)
}
const fiveXX = [...counts].filter(([k]) => / 5\d\d$/.test(k)).reduce((a, [, n]) => a + n, 0)

// Memory: skip the warm-up (JIT, caches filling): the first 20 % of the run, at most 30 s.
const warmup = Math.min(30, elapsed * 0.2)
const measured = samples.filter(([t]) => t >= warmup)
// The floor of RSS (the lowest sample of each few seconds) is what is left after the garbage
// collector and argon2id have given memory back: a leak lifts it, a burst of hashing does not.
const bucket = Math.max(2, Math.min(5, Math.floor(measured.length / 4)))
const floors: Array<[number, number]> = []
for (let i = 0; i + bucket <= measured.length; i += bucket) {
  const chunk = measured.slice(i, i + bucket)
  const low = chunk.reduce((m, p) => (p[1] < m[1] ? p : m))
  floors.push([chunk[Math.floor(chunk.length / 2)]![0], low[1]])
}
const perMin = robustSlope(floors) * 60
const rawPerMin = robustSlope(measured) * 60
const lsqPerMin = leastSquaresSlope(measured) * 60
const firstRss = measured[0]?.[1] ?? NaN
const lastRss = measured[measured.length - 1]?.[1] ?? NaN
const windowMin = measured.length > 1 ? (measured[measured.length - 1]![0] - measured[0]![0]) / 60 : 0
// Growth of the floor over the measured window, from its trend, against where the floor started.
const floorStart = floors[0]?.[1] ?? NaN
const projectedGrowthPct = (perMin * windowMin) / floorStart * 100
console.log('soak: RSS over time (MB)')
const step = Math.max(1, Math.floor(samples.length / 12))
console.log('  ' + samples.filter((_, i) => i % step === 0).map(([t, r]) => `${t.toFixed(0)}s:${r.toFixed(0)}`).join('  '))
console.log(`soak: RSS after warm-up (${warmup.toFixed(0)} s): ${firstRss.toFixed(1)} → ${lastRss.toFixed(1)} MB, max ${Math.max(...samples.map(([, r]) => r)).toFixed(1)} MB; trend of the floor ${perMin.toFixed(2)} MB/min, ${projectedGrowthPct.toFixed(1)} % over the window (floors ${floors.map(([, r]) => r.toFixed(0)).join(' ')}; all samples: Theil–Sen ${rawPerMin.toFixed(2)}, least squares ${lsqPerMin.toFixed(2)} MB/min)`)
console.log(`soak: server exit code after SIGTERM: ${String(exitCode)}`)
for (const p of firstProblems) console.log(`soak: problem: ${p}`)

const growing = perMin > MAX_SLOPE && projectedGrowthPct > MAX_GROWTH_PCT
const reasons = [
  ...(fiveXX > 0 ? [`${fiveXX} responses were 5xx`] : []),
  ...(failures > 0 ? [`${failures} requests failed on the network`] : []),
  ...(unexpected - fiveXX > 0 ? [`${unexpected - fiveXX} responses had an unexpected status`] : []),
  ...(growing ? [`the RSS floor grows ${perMin.toFixed(2)} MB/min (limit ${MAX_SLOPE}), ${projectedGrowthPct.toFixed(1)} % over the run (limit ${MAX_GROWTH_PCT} %)`] : []),
  ...(exitCode !== 0 ? [`the server did not exit cleanly on SIGTERM (${String(exitCode)})`] : []),
  ...(floors.length < 3 ? ['too few RSS samples for a trend (run longer)'] : [])
]
if (reasons.length === 0) {
  console.log(`soak: PASS (0 5xx, 0 failed requests, RSS floor trend ${perMin.toFixed(2)} MB/min)`)
} else {
  console.log(`soak: FAIL: ${reasons.join('; ')}`)
  process.exitCode = 1
}
