/**
 * Login timing: does a failed login take as long for an unknown username as for a known
 * username with a wrong password? If it did not, response times alone would tell an attacker
 * which usernames exist (OWASP Authentication Cheat Sheet, "Authentication and Error
 * Messages"; the service verifies unknown users against a dummy argon2id hash for this).
 * Not part of the test suite: timings on a shared machine are too noisy for a pass/fail test.
 *
 *   npm run timing                          200 samples of each kind
 *   npm run timing -- --samples 500         more samples (TIMING_SAMPLES too)
 *
 * The server is the real app, listening on 127.0.0.1, with production argon2id parameters
 * (m=19456 KiB, t=2, p=1 unless ARGON2_* say otherwise), a file database, and the rate and
 * failed-login limits raised out of the way. Requests go one at a time, the two kinds
 * interleaved in random order, so that drift in machine load hits both alike; unknown
 * usernames are new every time. Prints medians, percentiles, the ratio of the medians, and a
 * Mann–Whitney U test; the verdict is `timing: PASS` when the ratio is within
 * TIMING_TOLERANCE (default 0.1) of 1.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'

const { values: flags } = parseArgs({ options: { samples: { type: 'string' }, warmup: { type: 'string' } } })
const SAMPLES = Number(flags.samples ?? process.env.TIMING_SAMPLES ?? 200)
const WARMUP = Number(flags.warmup ?? process.env.TIMING_WARMUP ?? 10)
const TOLERANCE = Number(process.env.TIMING_TOLERANCE ?? 0.1)
const KNOWN_USERS = 10
const PASSWORD = 'timing benchmark passphrase 2026'

const dir = mkdtempSync(join(tmpdir(), 'auth-timing-'))
process.on('exit', () => { rmSync(dir, { recursive: true, force: true }) })

const unlimited = '1000000'
const config = loadConfig({
  NODE_ENV: 'development',
  DATABASE_URL: `file:${join(dir, 'auth.db')}`,
  LOG_LEVEL: 'warn',
  PUBLIC_URL: 'http://127.0.0.1:3000',
  RATE_LIMIT_MAX: unlimited,
  RATE_LIMIT_LOGIN_MAX: unlimited,
  RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: unlimited,
  DEMO_ENABLED: 'false',
  ...Object.fromEntries(['ARGON2_MEMORY_KIB', 'ARGON2_TIME_COST', 'ARGON2_PARALLELISM'].flatMap((k) => process.env[k] === undefined ? [] : [[k, process.env[k]]]))
})
const app = await buildApp(config)
await app.listen({ host: '127.0.0.1', port: 0 })
const { port } = app.server.address() as { port: number }
const base = `http://127.0.0.1:${port}`
console.log(`timing: ${SAMPLES} samples per kind (+${WARMUP} warm-up), argon2id m=${config.password.memoryCost} KiB t=${config.password.timeCost} p=${config.password.parallelism}, server at ${base}`)

async function post (path: string, body: unknown): Promise<{ status: number, text: string, ms: number }> {
  const t0 = performance.now()
  const res = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const text = await res.text()
  return { status: res.status, text, ms: performance.now() - t0 }
}

for (let i = 0; i < KNOWN_USERS; i++) {
  const r = await post('/api/auth/register', { username: `known-${i}`, password: PASSWORD })
  if (r.status !== 201) throw new Error(`register known-${i}: ${r.status} ${r.text}`)
}

const known: number[] = []
const unknown: number[] = []
const bodies = new Set<string>()
let n = 0
async function sample (kind: 'known' | 'unknown', keep: boolean): Promise<void> {
  n++
  const username = kind === 'known' ? `known-${n % KNOWN_USERS}` : `ghost-${n}-${Math.random().toString(36).slice(2, 8)}`
  const r = await post('/api/auth/login', { username, password: `wrong password number ${n}`, transport: 'body' })
  if (r.status !== 401) throw new Error(`${kind} login answered ${r.status} ${r.text}`)
  bodies.add(r.text)
  if (keep) (kind === 'known' ? known : unknown).push(r.ms)
}

for (let i = 0; i < SAMPLES + WARMUP; i++) {
  const order: Array<'known' | 'unknown'> = Math.random() < 0.5 ? ['known', 'unknown'] : ['unknown', 'known']
  for (const kind of order) await sample(kind, i >= WARMUP)
  if ((i + 1) % 50 === 0) console.log(`timing: ${i + 1}/${SAMPLES + WARMUP}`)
}
await app.close()

const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b)
const q = (xs: number[], p: number): number => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]!
const median = (xs: number[]): number => {
  const s = sorted(xs)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

/** Mann–Whitney U with the normal approximation (ties averaged): z and two-sided p. */
function mannWhitney (a: number[], b: number[]): { z: number, p: number } {
  const all = [...a.map((v) => ({ v, g: 0 })), ...b.map((v) => ({ v, g: 1 }))].sort((x, y) => x.v - y.v)
  const ranks = new Array<number>(all.length)
  for (let i = 0; i < all.length;) {
    let j = i
    while (j + 1 < all.length && all[j + 1]!.v === all[i]!.v) j++
    for (let k = i; k <= j; k++) ranks[k] = (i + j) / 2 + 1
    i = j + 1
  }
  const ra = all.reduce((s, x, i) => s + (x.g === 0 ? ranks[i]! : 0), 0)
  const u = ra - a.length * (a.length + 1) / 2
  const mu = a.length * b.length / 2
  const sigma = Math.sqrt(a.length * b.length * (a.length + b.length + 1) / 12)
  const z = (u - mu) / sigma
  // Two-sided p from the standard normal (Abramowitz–Stegun 7.1.26 for erf).
  const x = Math.abs(z) / Math.SQRT2
  const t = 1 / (1 + 0.3275911 * x)
  const erf = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x)
  return { z, p: 1 - erf }
}

const row = (name: string, xs: number[]): string => {
  const s = sorted(xs)
  return `  ${name.padEnd(28)} median ${median(xs).toFixed(2).padStart(7)} ms   p10 ${q(s, 0.1).toFixed(2).padStart(7)}   p90 ${q(s, 0.9).toFixed(2).padStart(7)}   mean ${(xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(2).padStart(7)}`
}
console.log('timing: failed-login latency over HTTP')
console.log(row('unknown username', unknown))
console.log(row('known username, wrong pw', known))
const ratio = median(unknown) / median(known)
// Each pair ran back to back, under the same machine load: the median of the per-pair ratios
// is steadier than the ratio of medians when other work shares the CPU.
const pairedRatio = median(unknown.map((u, i) => u / known[i]!))
const { z, p } = mannWhitney(unknown, known)
console.log(`timing: ratio of medians (unknown / known) = ${ratio.toFixed(3)}; median of paired ratios = ${pairedRatio.toFixed(3)}; Mann–Whitney z = ${z.toFixed(2)}, p = ${p.toFixed(3)} (${p < 0.05 ? 'a difference is detectable at 5 %' : 'no detectable difference at 5 %'})`)
console.log(`timing: distinct response bodies across all ${2 * (SAMPLES + WARMUP)} failed logins: ${bodies.size}`)
if (Math.abs(ratio - 1) <= TOLERANCE && bodies.size === 1) {
  console.log(`timing: PASS (ratio within ${TOLERANCE} of 1, one identical body)`)
} else {
  console.log(`timing: FAIL (ratio ${ratio.toFixed(3)}, tolerance ${TOLERANCE}; ${bodies.size} distinct bodies)`)
  process.exitCode = 1
}
