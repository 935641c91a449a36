/**
 * A global per-IP limit on every route, tightened per route through `config.rateLimit`
 * (login, register, refresh) and switched off for the probes (/health, /ready). The key is
 * `request.ip`, so behind a proxy TRUST_PROXY decides whether X-Forwarded-For is believed.
 * Rejections are thrown as RATE_LIMITED and rendered by the app's error handler, with
 * `Retry-After` set by the plugin.
 *
 * With REDIS_URL the counts live in Redis (the plugin's own Redis store), shared by every
 * instance. While Redis cannot answer, these limits fail open (`skipOnError`): requests pass
 * uncounted, and a warning says so at most every ten seconds. Open, because they only slow
 * guessing down: the per-account login throttle, which protects the passwords, fails closed
 * (src/auth/redis-login-throttle.ts), and refusing every request of the service because a
 * counter is out of reach would turn a Redis outage into a full one.
 * @see https://github.com/fastify/fastify-rate-limit
 */
import { createRequire } from 'node:module'
import fastifyRateLimit, { type FastifyRateLimitStore, type FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { FastifyBaseLogger } from 'fastify'
import fp from 'fastify-plugin'
import { RateLimited } from '../src/errors.js'
import { everyInterval, redisTarget, type Redis } from '../src/redis.js'

type RedisStoreCtor = new (continueExceeding: boolean, exponentialBackoff: boolean, redis: Redis, key?: string) => FastifyRateLimitStore
// The plugin's Redis store (its Lua script, its key layout), reached directly so that it can be
// wrapped below; the package has no `exports` map, so the path is public.
const RedisStore = createRequire(import.meta.url)('@fastify/rate-limit/store/RedisStore.js') as RedisStoreCtor

/** The plugin's Redis store, reporting each failed count before the plugin skips it. */
function loggingRedisStore (redis: Redis, url: string, log: FastifyBaseLogger): FastifyRateLimitStoreCtor {
  const target = redisTarget(url)
  const report = everyInterval<Error>(10_000, (err, suppressed) => {
    log.warn({ redis: target, error: err.message, suppressed }, 'per-IP rate limits not counted: Redis unavailable (failing open)')
  })
  const wrap = (inner: FastifyRateLimitStore): FastifyRateLimitStore => ({
    incr (key, callback, timeWindow, max) {
      inner.incr(key, (err, result) => {
        if (err !== null) report(err)
        callback(err, result)
      }, timeWindow, max)
    },
    child: (routeOptions) => wrap(inner.child(routeOptions))
  })
  return class {
    constructor (options: { continueExceeding?: boolean, exponentialBackoff?: boolean }) {
      return wrap(new RedisStore(options.continueExceeding === true, options.exponentialBackoff === true, redis, 'auth:rate-limit:'))
    }
  } as unknown as FastifyRateLimitStoreCtor
}

export default fp(async function rateLimitPlugin (app) {
  const { rateLimit, redisUrl } = app.config
  await app.register(fastifyRateLimit, {
    global: rateLimit.enabled,
    max: rateLimit.global.max,
    timeWindow: rateLimit.global.windowSeconds * 1000,
    ...(app.redis === null || redisUrl === null ? {} : { store: loggingRedisStore(app.redis, redisUrl, app.log), skipOnError: true }),
    // Only the standard headers on rejections; no per-response counters to fingerprint.
    addHeadersOnExceeding: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false },
    addHeaders: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false, 'retry-after': true },
    errorResponseBuilder: (_request, context) => new RateLimited(String(Math.ceil(context.ttl / 1000))),
    onExceeded: (request) => { request.log.warn({ route: request.routeOptions.url }, 'rate limit exceeded') }
  })
}, { name: 'rate-limit', fastify: '5.x', dependencies: ['config', 'redis'] })
