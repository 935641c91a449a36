/**
 * Baseline: the login (and register) ceiling. argon2id through @node-rs/argon2, as the service
 * calls it, at the service's parameters (ARGON2_*), on a thread pool of the service's size
 * (UV_THREADPOOL_SIZE, passed in by the harness): BENCH_CONCURRENCY operations kept in flight
 * for BENCH_DURATION seconds after BENCH_WARMUP seconds. Prints one JSON line.
 *
 *   BENCH_ARGON2_OP=verify|hash
 */
import { hash, verify } from '@node-rs/argon2'

const params = {
  algorithm: 2,
  outputLen: 32,
  memoryCost: Number(process.env.ARGON2_MEMORY_KIB ?? 19456),
  timeCost: Number(process.env.ARGON2_TIME_COST ?? 2),
  parallelism: Number(process.env.ARGON2_PARALLELISM ?? 1)
}
const op = process.env.BENCH_ARGON2_OP === 'hash' ? 'hash' : 'verify'
const duration = Number(process.env.BENCH_DURATION ?? 10)
const warmup = Number(process.env.BENCH_WARMUP ?? 2)
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 50)
const password = 'bench-password-correct-horse-battery'
const phc = await hash(password, params)

let measuring = false
let stop = false
const latencies: number[] = []
const one = async (): Promise<void> => {
  const t = performance.now()
  if (op === 'hash') await hash(password, params)
  else if (!await verify(phc, password)) throw new Error('argon2 verify failed')
  if (measuring) latencies.push(performance.now() - t)
}
const worker = async (): Promise<void> => { while (!stop) await one() }

const workers = Array.from({ length: concurrency }, worker)
await new Promise((resolve) => setTimeout(resolve, warmup * 1000))
measuring = true
const started = performance.now()
await new Promise((resolve) => setTimeout(resolve, duration * 1000))
measuring = false
const seconds = (performance.now() - started) / 1000
const count = latencies.length
stop = true
await Promise.all(workers)
latencies.sort((a, b) => a - b)
const at = (q: number): number => latencies[Math.min(count - 1, Math.floor(q * count))] ?? 0
console.log(JSON.stringify({ op, opsPerSec: count / seconds, p50: at(0.5), p99: at(0.99), count, seconds, params, threadPool: process.env.UV_THREADPOOL_SIZE ?? '4 (libuv default)' }))
