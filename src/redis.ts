/**
 * The Redis connection that several instances share their counters through (REDIS_URL): the
 * per-IP rate limits (plugins/rate-limit.ts) and the per-account login throttle
 * (src/auth/redis-login-throttle.ts). Nothing else is kept there, and nothing in it is data:
 * losing it loses the counts of the current windows, no account or session.
 *
 * Every command ends within a bounded time, whatever Redis does: there is no offline queue (a
 * command while the connection is down fails at once instead of waiting for a reconnection),
 * and a command that gets no answer (a server that hangs, a network that drops packets) fails
 * after COMMAND_TIMEOUT_MS. The client reconnects by itself, forever, at most RETRY_MAX_MS
 * apart, so an outage ends without a restart of the service.
 */
import type { Redis, RedisOptions } from 'ioredis'

export const CONNECT_TIMEOUT_MS = 2000
export const COMMAND_TIMEOUT_MS = 1000
const RETRY_MAX_MS = 1000

export type { Redis }

/** A start refused because Redis could not be reached: one line for the operator, not a crash. */
export class RedisUnavailableError extends Error {
  override name = 'RedisUnavailableError'
}

export interface RedisLog {
  warn: (obj: object, msg: string) => void
  info: (obj: object, msg: string) => void
}

/** Where REDIS_URL points, without its password: what a log line or an error may say. */
export function redisTarget (url: string): string {
  const u = new URL(url)
  return `${u.protocol}//${u.host}${u.pathname.length > 1 ? u.pathname : ''}`
}

/**
 * Calls `write` at most once per `intervalMs` with the number of calls since the last line, so
 * that an outage seen by every request writes a few lines, not one per request.
 */
export function everyInterval<T> (intervalMs: number, write: (arg: T, suppressed: number) => void): (arg: T) => void {
  let last = -Infinity
  let suppressed = 0
  return (arg) => {
    const now = Date.now()
    if (now - last < intervalMs) { suppressed++; return }
    last = now
    write(arg, suppressed)
    suppressed = 0
  }
}

/**
 * Connects to `url` and resolves once Redis answers; refuses (naming REDIS_URL) when it cannot
 * be reached within CONNECT_TIMEOUT_MS, so that a wrong URL stops the start with one line
 * instead of a service whose logins all answer 503. After the start, an outage is survived.
 */
export async function connectRedis (url: string, log: RedisLog, options: RedisOptions = {}): Promise<Redis> {
  const target = redisTarget(url)
  // Loaded only here: a service without REDIS_URL never pays for the client at start.
  const { Redis } = await import('ioredis')
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: COMMAND_TIMEOUT_MS,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (times) => Math.min(100 * times, RETRY_MAX_MS),
    ...options
  })
  let down = false
  let lastError: Error | undefined
  const logError = everyInterval<Error>(10_000, (err, suppressed) => {
    log.warn({ redis: target, error: err.message, suppressed }, 'Redis unavailable: login throttle refusing (503), per-IP limits open')
  })
  client.on('error', (err: Error) => {
    down = true
    lastError = err
    logError(err)
  })
  client.on('ready', () => {
    if (down) log.info({ redis: target }, 'Redis reachable again')
    down = false
  })
  try {
    await client.connect()
    await client.ping()
  } catch (err) {
    client.disconnect()
    // The socket's own error (ECONNREFUSED, ENOTFOUND, a TLS or AUTH failure) says more than
    // the client's "Connection is closed".
    throw new RedisUnavailableError(`REDIS_URL: cannot reach Redis at ${target} (${(lastError ?? err as Error).message})`)
  }
  return client
}

/** Closes the connection, politely if Redis answers within a second. */
export async function closeRedis (client: Redis): Promise<void> {
  const timer = setTimeout(() => client.disconnect(), 1000)
  try {
    await client.quit()
  } catch {
    client.disconnect()
  } finally {
    clearTimeout(timer)
  }
}
