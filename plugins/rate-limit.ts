/**
 * A global per-IP limit on every route, tightened per route through `config.rateLimit`
 * (login, register, refresh) and switched off for the probes (/health, /ready). The key is
 * `request.ip`, so behind a proxy TRUST_PROXY decides whether X-Forwarded-For is believed.
 * Rejections are thrown as RATE_LIMITED and rendered by the app's error handler, with
 * `Retry-After` set by the plugin.
 * @see https://github.com/fastify/fastify-rate-limit
 */
import fastifyRateLimit from '@fastify/rate-limit'
import fp from 'fastify-plugin'
import { RateLimited } from '../src/errors.js'

export default fp(async function rateLimitPlugin (app) {
  const { rateLimit } = app.config
  await app.register(fastifyRateLimit, {
    global: rateLimit.enabled,
    max: rateLimit.global.max,
    timeWindow: rateLimit.global.windowSeconds * 1000,
    // Only the standard headers on rejections; no per-response counters to fingerprint.
    addHeadersOnExceeding: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false },
    addHeaders: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false, 'retry-after': true },
    errorResponseBuilder: (_request, context) => new RateLimited(String(Math.ceil(context.ttl / 1000))),
    onExceeded: (request) => { request.log.warn({ route: request.routeOptions.url }, 'rate limit exceeded') }
  })
}, { name: 'rate-limit', fastify: '5.x', dependencies: ['config'] })
