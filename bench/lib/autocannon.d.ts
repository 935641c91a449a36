/** The part of autocannon's programmatic API the harness uses (the package ships no types). */
declare module 'autocannon' {
  export interface Request {
    method?: string
    path?: string
    headers?: Record<string, string>
    body?: string
    setupRequest?: (request: Request, context: Record<string, unknown>) => Request
    onResponse?: (status: number, body: string, context: Record<string, unknown>, headers: Record<string, string | string[]>) => void
  }
  export interface Options {
    url: string
    connections?: number
    duration?: number
    pipelining?: number
    timeout?: number
    method?: string
    headers?: Record<string, string>
    body?: string
    requests?: Request[]
    warmup?: { connections: number, duration: number }
  }
  export interface Histogram {
    average: number
    mean: number
    stddev: number
    min: number
    max: number
    total: number
    p50: number
    p90: number
    p99: number
    p99_9?: number
    [key: string]: number | undefined
  }
  export interface Result {
    duration: number
    requests: Histogram & { sent: number }
    latency: Histogram
    errors: number
    timeouts: number
    non2xx: number
    statusCodeStats: Record<string, { count: number }>
    /** The warm-up's own result, when a warm-up was asked for. */
    warmup?: Result
  }
  export interface Instance extends PromiseLike<Result> {
    stop: () => void
    /** Every answer of the measured phase: its status and its duration in milliseconds (a float). */
    on: (event: 'response', listener: (client: unknown, status: number, bytes: number, ms: number) => void) => Instance
  }
  function autocannon (options: Options): Instance
  export default autocannon
}
