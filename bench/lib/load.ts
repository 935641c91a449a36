/**
 * Drives one HTTP scenario with autocannon (programmatic API, in the harness process, never in
 * the server's) and reduces its result to what the report needs.
 *
 * Latency percentiles come from every correct answer's own duration (autocannon times each
 * request with process.hrtime), not from autocannon's histogram, which keeps whole
 * milliseconds: at p99s of 8 to 15 ms that is a step of 7 to 12 % in a p99 ratio.
 */
import autocannon, { type Request } from 'autocannon'

export interface LoadSpec {
  url: string
  connections: number
  /** Seconds measured. */
  duration: number
  /** Seconds of the same load before measuring (not counted). */
  warmup: number
  /** The status a correct answer has; every other status is reported as a failure. */
  expect: number
  /** The path of every request (ignored when `requests` set their own). */
  path?: string
  method?: string
  headers?: Record<string, string>
  body?: string
  /** Per-request setup (autocannon `requests`), for scenarios where every request differs. */
  requests?: Request[]
}

export interface LoadResult {
  /** Correct answers (status `expect`) per second. */
  rps: number
  /** Every answer per second, whatever its status. */
  allRps: number
  /** Milliseconds, from the correct answers of the measured seconds. */
  p50: number
  p99: number
  /** Answers by status code. */
  statuses: Record<string, number>
  /** Answers that were not `expect`. */
  unexpected: number
  /** Connection errors and timeouts. */
  errors: number
  timeouts: number
  seconds: number
  /** Answers of every status, warm-up included (to divide the server's CPU time by). */
  answeredWithWarmup: number
}

export async function drive (spec: LoadSpec): Promise<LoadResult> {
  const options = {
    url: spec.url + (spec.path ?? ''),
    connections: spec.connections,
    duration: spec.duration,
    pipelining: 1,
    timeout: 10,
    ...(spec.method === undefined ? {} : { method: spec.method }),
    ...(spec.headers === undefined ? {} : { headers: spec.headers }),
    ...(spec.body === undefined ? {} : { body: spec.body }),
    ...(spec.requests === undefined ? {} : { requests: spec.requests }),
    ...(spec.warmup > 0 ? { warmup: { connections: spec.connections, duration: spec.warmup } } : {})
  }
  const run = autocannon(options)
  // The tracker autocannon returns reports the measured phase only (its warm-up has its own).
  let latencies = new Float64Array(1 << 16)
  let n = 0
  run.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
    if (status !== spec.expect) return
    if (n === latencies.length) {
      const grown = new Float64Array(latencies.length * 2)
      grown.set(latencies)
      latencies = grown
    }
    latencies[n++] = ms
  })
  const result = await run
  const measured = latencies.subarray(0, n).sort()
  const percentile = (q: number): number => measured[Math.min(n - 1, Math.ceil(q * n) - 1)]!
  const statuses: Record<string, number> = {}
  let answered = 0
  for (const [status, { count }] of Object.entries(result.statusCodeStats)) {
    statuses[status] = count
    answered += count
  }
  const ok = statuses[String(spec.expect)] ?? 0
  const warmupAnswered = Object.values(result.warmup?.statusCodeStats ?? {}).reduce((sum, { count }) => sum + count, 0)
  const seconds = result.duration
  return {
    rps: ok / seconds,
    allRps: answered / seconds,
    p50: n === 0 ? result.latency.p50 : percentile(0.5),
    p99: n === 0 ? result.latency.p99 : percentile(0.99),
    statuses,
    unexpected: answered - ok,
    errors: result.errors,
    timeouts: result.timeouts,
    seconds,
    answeredWithWarmup: answered + warmupAnswered
  }
}
