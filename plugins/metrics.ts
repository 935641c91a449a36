/**
 * Prometheus metrics at /metrics (text format), from prom-client with a registry per app, so
 * that every test app counts on its own.
 *
 * What an operator of an auth service watches: request duration by route and status, login
 * and refresh outcomes (a jump in `reuse_detected` means stolen refresh tokens, one in
 * `invalid_credentials` means password guessing), rate-limit rejections, how long password
 * hashing takes (argon2 runs on libuv's thread pool: when it queues, logins slow down), live
 * sessions, and the age of the signing key (a key that never rotates shows up here).
 *
 * METRICS_ENABLED=false removes the endpoint (the counters still count, at no real cost).
 * METRICS_PORT serves /metrics on its own listener, bound to HOST, and not on the main port,
 * so it can stay off the public network. METRICS_TOKEN makes either listener answer only a
 * scraper that sends it as a Bearer token. In production, with neither set, the main port does
 * not serve /metrics at all: live session counts and login outcomes are not for the public.
 * The endpoint is never rate limited: a scraper must not be refused.
 *
 * No label may tell apart what the responses hide: a right password for a disabled account
 * answers like a wrong one, so it is counted as `invalid_credentials` too.
 * @see https://github.com/siimon/prom-client
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { Server } from 'node:http'
import { AuthorizationRequired } from '../src/errors.js'
import { createServer } from '../src/tuning/node-http.js'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

export type LoginOutcome = 'success' | 'invalid_credentials' | 'throttled'

export interface Metrics {
  registry: Registry
  loginOutcomes: Counter<'outcome'>
  refreshOutcomes: Counter<'outcome'>
  housekeepingDeleted: Counter<'kind'>
  /** The text a scraper gets. */
  render: () => Promise<{ contentType: string, body: string }>
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
    /** The separate /metrics listener when METRICS_PORT is set (listening once the app listens). */
    metricsServer: Server | null
  }
}

export function createMetrics (app: FastifyInstance): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })

  const loginOutcomes = new Counter({
    name: 'auth_login_total',
    help: 'Login attempts by outcome: success, invalid_credentials (unknown user, wrong password or disabled account), throttled (per-username failure limit)',
    labelNames: ['outcome'] as const,
    registers: [registry]
  })
  const refreshOutcomes = new Counter({
    name: 'auth_refresh_total',
    help: 'Refresh attempts by outcome: rotated, reuse_interval (spent token re-presented within the reuse interval), reuse_detected (late reuse: session revoked), expired, revoked, invalid, missing',
    labelNames: ['outcome'] as const,
    registers: [registry]
  })
  const housekeepingDeleted = new Counter({
    name: 'auth_housekeeping_deleted_total',
    help: 'Rows deleted by housekeeping, by kind (refresh_tokens, sessions, audit_events, mfa_challenges, sent_mail)',
    labelNames: ['kind'] as const,
    registers: [registry]
  })

  new Gauge({ // eslint-disable-line no-new
    name: 'auth_sessions_live',
    help: 'Sessions that are neither ended nor expired (counted at scrape time)',
    registers: [registry],
    async collect () {
      this.set(await app.repos.sessions.countLive(new Date()))
    }
  })
  new Gauge({ // eslint-disable-line no-new
    name: 'auth_signing_key_age_seconds',
    help: 'Seconds since the key that signs access tokens now started signing (absent with HS256)',
    labelNames: ['alg'] as const,
    registers: [registry],
    collect () {
      this.reset()
      const now = new Date()
      const key = app.keyRing.signingKey(now)
      if (key.alg !== 'HS256') this.set({ alg: key.alg }, Math.max(0, Math.round((now.getTime() - key.activatesAt.getTime()) / 1000)))
    }
  })
  new Gauge({ // eslint-disable-line no-new
    name: 'auth_jwks_keys',
    help: 'Public keys published in the JWKS (next, current and retired)',
    registers: [registry],
    collect () {
      this.set(app.keyRing.keys.filter((k) => k.jwk !== null).length)
    }
  })

  new Counter({ // eslint-disable-line no-new
    name: 'auth_db_wal_syncs_total',
    help: 'fdatasync calls of the write-ahead log by the group commit (DATABASE_SYNCHRONOUS=FULL); each covers every commit made before it began',
    registers: [registry],
    collect () {
      if (app.durability === null) return
      this.reset()
      this.inc(app.durability.syncs)
    }
  })

  return {
    registry,
    loginOutcomes,
    refreshOutcomes,
    housekeepingDeleted,
    render: async () => ({ contentType: registry.contentType, body: await registry.metrics() })
  }
}

export default fp(async function metricsPlugin (app) {
  const { config } = app
  const metrics = createMetrics(app)
  app.decorate('metrics', metrics)

  const requestDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from request to response, by method, route pattern and status code',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [metrics.registry]
  })
  const rateLimited = new Counter({
    name: 'auth_rate_limited_total',
    help: 'Requests refused with 429, by route (per-IP limits and the per-username login limit)',
    labelNames: ['route'] as const,
    registers: [metrics.registry]
  })
  const hashing = new Histogram({
    name: 'auth_password_hash_duration_seconds',
    help: 'Time to hash or verify a password with argon2id, including the wait for a thread-pool slot',
    labelNames: ['operation'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [metrics.registry]
  })

  // The hasher is timed where the routes call it: each method is wrapped once, here, before any
  // route takes the decorator. Unknown-user logins verify against the dummy hash and count as
  // `verify` too, as they cost the same.
  const { passwords } = app
  const timed = <A extends unknown[], R>(operation: string, fn: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
    const end = hashing.startTimer({ operation })
    try {
      return await fn(...args)
    } finally {
      end()
    }
  }
  passwords.hash = timed('hash', passwords.hash)
  passwords.verify = timed('verify', passwords.verify)
  passwords.verifyDummy = timed('verify', passwords.verifyDummy)

  app.addHook('onResponse', async (request, reply) => {
    // Unknown paths share one label, so that probing cannot blow up the series count.
    const route = request.routeOptions.url ?? 'unmatched'
    requestDuration.observe({ method: request.method, route, status_code: reply.statusCode }, reply.elapsedTime / 1000)
    if (reply.statusCode === 429) rateLimited.inc({ route })
  })

  const metricsSchema = {
    summary: 'Prometheus metrics (text exposition format)',
    tags: ['operations'],
    response: {
      200: {
        description: 'Prometheus text format 0.0.4',
        content: { 'text/plain': { schema: { type: 'string' } } }
      }
    }
  }

  // The scrape token, compared by digest in constant time.
  const { token } = config.metrics
  const tokenDigest = token === undefined ? null : createHash('sha256').update(`Bearer ${token}`).digest()
  const authorized = (authorization: string | undefined): boolean =>
    tokenDigest === null || (authorization !== undefined && timingSafeEqual(createHash('sha256').update(authorization).digest(), tokenDigest))

  const onMainPort = config.metrics.enabled && config.metrics.port === null && (token !== undefined || config.env !== 'production')
  if (config.metrics.enabled && config.metrics.port === null && !onMainPort) {
    app.log.info('/metrics is not served: set METRICS_PORT (an internal listener) or METRICS_TOKEN (a bearer token) to scrape it')
  }
  if (onMainPort) {
    app.get('/metrics', {
      schema: metricsSchema,
      config: { rateLimit: false },
      logLevel: 'warn'
    }, async (request, reply) => {
      if (!authorized(request.headers.authorization)) throw new AuthorizationRequired()
      const { contentType, body } = await metrics.render()
      return reply.type(contentType).header('cache-control', 'no-store').send(body)
    })
  }

  let server: Server | null = null
  if (config.metrics.enabled && config.metrics.port !== null) {
    const port = config.metrics.port
    server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0]
      if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
        res.writeHead(404, { 'content-type': 'application/json; charset=utf-8', 'x-content-type-options': 'nosniff' })
        res.end(JSON.stringify({ statusCode: 404, code: 'NOT_FOUND', message: 'Not found' }))
        return
      }
      if (!authorized(req.headers.authorization)) {
        res.writeHead(401, { 'content-type': 'application/json; charset=utf-8', 'www-authenticate': 'Bearer realm="metrics"', 'x-content-type-options': 'nosniff' })
        res.end(JSON.stringify({ statusCode: 401, code: 'AUTHORIZATION_REQUIRED', message: 'A Bearer access token is required' }))
        return
      }
      metrics.render().then(({ contentType, body }) => {
        res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' })
        res.end(req.method === 'HEAD' ? undefined : body)
      }, (err: unknown) => {
        app.log.error({ err }, 'metrics collection failed')
        res.writeHead(500, { 'content-type': 'application/json; charset=utf-8', 'x-content-type-options': 'nosniff' })
        res.end(JSON.stringify({ statusCode: 500, code: 'INTERNAL_ERROR', message: 'Internal server error' }))
      })
    })
    const listener = server
    // The metrics listener follows the main one: it opens when the app listens (buildApp alone
    // never listens) and closes with the app. If its port cannot be bound, the service stops
    // with exit code 1 rather than run without the metrics the operator asked for.
    app.addHook('onListen', async () => {
      try {
        await new Promise<void>((resolve, reject) => {
          listener.once('error', reject)
          listener.listen({ host: config.host, port }, () => { listener.off('error', reject); resolve() })
        })
        const address = listener.address()
        app.log.info({ address }, 'metrics listening')
      } catch (err) {
        app.log.fatal({ err, port }, 'metrics listener could not start (METRICS_PORT)')
        process.exitCode = 1
        await app.close()
      }
    })
    app.addHook('onClose', async () => {
      if (!listener.listening) return
      const closed = new Promise<void>((resolve) => listener.close(() => resolve()))
      listener.closeIdleConnections()
      await closed
    })
  }
  app.decorate('metricsServer', server)
}, { name: 'metrics', fastify: '5.x', dependencies: ['config', 'db', 'auth', 'jwt'] })
