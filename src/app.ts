/**
 * buildApp(config): the whole service as a Fastify instance, ready but not listening. The
 * server entry and every test call this same factory. Boot order is spelled out here:
 * infrastructure plugins, then domain plugins, then routes.
 */
import { randomUUID } from 'node:crypto'
import type { Server } from 'node:http'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyHttpOptions, type FastifyInstance, type FastifyReply, type FastifyServerOptions, type RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import auditPlugin from '../plugins/audit.js'
import authPlugin from '../plugins/auth.js'
import authenticatePlugin from '../plugins/authenticate.js'
import cookiePlugin from '../plugins/cookie.js'
import corsPlugin from '../plugins/cors.js'
import dbPlugin from '../plugins/db.js'
import housekeepingPlugin from '../plugins/housekeeping.js'
import instancesPlugin from '../plugins/instances.js'
import jwtPlugin from '../plugins/jwt.js'
import mailPlugin from '../plugins/mail.js'
import metricsPlugin from '../plugins/metrics.js'
import passkeysPlugin from '../plugins/passkeys.js'
import rateLimitPlugin from '../plugins/rate-limit.js'
import redisPlugin from '../plugins/redis.js'
import swaggerPlugin from '../plugins/swagger.js'
import accountPages from '../routes/account-pages.js'
import adminRoutes from '../routes/admin/index.js'
import authRoutes from '../routes/auth/index.js'
import demoRoutes from '../routes/demo.js'
import healthRoutes from '../routes/health.js'
import { ErrorSchema, TokenResponseSchema, UserSchema } from '../routes/schemas.js'
import wellKnownRoutes from '../routes/well-known.js'
import type { Config } from './config.js'
import { bearerChallenge, NotFound, ServiceUnavailable } from './errors.js'
import { answerClientError, toPublicError } from './public-error.js'
import { lazySerializers } from './tuning/lazy-serializers.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

/** What pino must never write, wherever it appears. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  // Headers logged under any other name (request, reply, upstream, ...), or on their own.
  '*.headers.authorization', '*.headers.cookie', '*.headers["set-cookie"]', '*.authorization', '*.cookie', '*["set-cookie"]',
  '*.password', '*.currentPassword', '*.newPassword', '*.refreshToken', '*.accessToken', '*.token',
  '*.mfaToken', '*.recoveryCode', '*.recoveryCodes', '*.secret', '*.otpauthUri'
]

/**
 * TRUST_PROXY as Fastify takes it. A hop count n believes the last n entries of the chain
 * (the socket's peer and the X-Forwarded-For entries the proxies appended), so the client is
 * the address the outermost proxy saw, whatever the client wrote further left. Fastify itself
 * answers a bare number by trusting nothing (it cannot tell a direct client from the proxy),
 * hence the function: a hop count is for a service reachable only through its proxies; where
 * it is not, list the proxies' addresses instead.
 */
function trustProxyOption (tp: Config['trustProxy']): FastifyServerOptions['trustProxy'] {
  if (typeof tp === 'number') return (_address: string, hop: number) => hop < tp
  return Array.isArray(tp) ? [...tp] : tp
}

export interface BuildOptions {
  /** A logger instance (tests capture output through it); default: pino from config. */
  logger?: FastifyBaseLogger
  /** A pino destination stream for the default logger. */
  logStream?: NodeJS.WritableStream
  /** Called for every route as it is registered (the OpenAPI test lists them this way). */
  onRoute?: (route: RouteOptions) => void
}

export async function buildApp (config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const timeoutMs = config.requestTimeout * 1000
  const fastifyOptions: FastifyHttpOptions<Server> = {
    trustProxy: trustProxyOption(config.trustProxy),
    bodyLimit: 16 * 1024,
    connectionTimeout: timeoutMs,
    requestTimeout: timeoutMs,
    // Node checks the request deadlines only every connectionsCheckingInterval (30 s by
    // default) and gives headers 60 s of their own, so a dribbled body was cut after up to
    // 90 s. Both follow REQUEST_TIMEOUT, and the check runs often enough to cut near it.
    http: { headersTimeout: timeoutMs, requestTimeout: timeoutMs, connectionsCheckingInterval: Math.min(1000, Math.ceil(timeoutMs / 4)) },
    // Requests that arrive while the service shuts down are refused by our own hook below,
    // with the error shape and Retry-After, instead of Fastify's bare 503.
    return503OnClosing: false,
    keepAliveTimeout: 72_000,
    genReqId: () => randomUUID(),
    // Our own onResponse hook writes one line per request instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    clientErrorHandler: answerClientError,
    // Errors the router raises before any route or hook runs (a malformed percent-encoding, a
    // path parameter longer than maxParamLength) get the same JSON shape as every other error
    // instead of Fastify's default body, which echoes the URL.
    frameworkErrors: (err, _request, reply) => {
      const { statusCode, body } = toPublicError(err)
      void (reply as FastifyReply).code(statusCode).type('application/json; charset=utf-8').header('x-content-type-options', 'nosniff').send(body)
    },
    routerOptions: { maxParamLength: 128 },
    ajv: { customOptions: { removeAdditional: 'all', coerceTypes: false, useDefaults: true, allErrors: false } },
    schemaController: { compilersFactory: { buildSerializer: lazySerializers() } }
  }
  if (options.logger !== undefined) {
    fastifyOptions.loggerInstance = options.logger
  } else {
    fastifyOptions.logger = {
      level: config.logLevel,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      ...(options.logStream === undefined ? {} : { stream: options.logStream })
    }
  }

  const app = Fastify(fastifyOptions).withTypeProvider<TypeBoxTypeProvider>()
  // JSON only: a text/plain body (what a cross-site HTML form or a careless client sends) is
  // refused as 415 before it reaches validation.
  app.removeContentTypeParser('text/plain')
  const { onRoute } = options
  if (onRoute !== undefined) app.addHook('onRoute', (route) => { onRoute(route as RouteOptions) })
  app.addSchema(ErrorSchema)
  app.addSchema(UserSchema)
  app.addSchema(TokenResponseSchema)

  app.setErrorHandler((err: FastifyError, request, reply) => {
    const error = toPublicError(err)
    if (error.statusCode >= 500) {
      request.log.error({ err, req: { method: request.method, url: request.url } }, 'request failed')
    } else {
      request.log.info({ code: error.code, statusCode: error.statusCode }, 'request refused')
    }
    const challenge = bearerChallenge(error.code)
    if (challenge !== undefined) reply.header('www-authenticate', challenge)
    if (error.retryAfter !== undefined) reply.header('retry-after', error.retryAfter)
    return reply.code(error.statusCode).type('application/json; charset=utf-8').send(error.body)
  })

  // One JSON line per request, with its id (also sent back as x-request-id). The line holds
  // only these fixed fields, none of them secret, so it is written through a child logger
  // without the redaction pass: with wildcard paths that pass visits every field and costs more
  // than the rest of the line (docs/decisions/0008-request-log-line.md). Every other log call
  // keeps redaction.
  const requestLog = app.log.child({}, { redact: [] })
  // nosniff on every response (errors, 404s, JWKS, static files): a browser never guesses a
  // type other than the one sent, so no response can be run as script or styles by mistake.
  let shuttingDown = false
  app.addHook('preClose', (done) => { shuttingDown = true; done() })
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    reply.header('x-content-type-options', 'nosniff')
    // Fastify sets Connection: close on these; requests already in flight finish normally.
    if (shuttingDown) { done(new ServiceUnavailable('The service is shutting down; retry on another instance')); return }
    done()
  })
  app.addHook('onResponse', (request, reply, done) => {
    requestLog.info({
      reqId: request.id,
      method: request.method,
      route: request.routeOptions.url ?? null,
      statusCode: reply.statusCode,
      ip: request.ip,
      ms: Math.round(reply.elapsedTime * 10) / 10
    }, 'request')
    done()
  })

  await app.register(fp(async (instance) => { instance.decorate('config', config) }, { name: 'config' }))
  // CORS first: preflights are answered before rate limits and auth, and every response
  // (errors included) carries the headers an allowed browser app needs to read it.
  await app.register(corsPlugin)
  await app.register(cookiePlugin)
  await app.register(redisPlugin)
  await app.register(rateLimitPlugin)
  await app.register(dbPlugin)
  await app.register(instancesPlugin)
  await app.register(passkeysPlugin)
  await app.register(authPlugin)
  await app.register(jwtPlugin)
  await app.register(authenticatePlugin)
  // Before any route (metrics registers /metrics): the OpenAPI document is collected from the
  // routes as they are registered.
  await app.register(swaggerPlugin)
  await app.register(auditPlugin)
  await app.register(metricsPlugin)
  await app.register(housekeepingPlugin)
  await app.register(mailPlugin)

  await app.register(healthRoutes)
  await app.register(wellKnownRoutes)
  await app.register(authRoutes, { prefix: '/api/auth' })
  await app.register(adminRoutes, { prefix: '/api/admin' })
  // The pages mailed links lead to when APP_URL is not set; they spend nothing.
  await app.register(accountPages)
  if (config.demo.enabled) await app.register(demoRoutes)

  // Unknown routes are limited too, so that probing for paths is slow.
  app.setNotFoundHandler({
    preHandler: config.rateLimit.enabled ? app.rateLimit({ max: 60, timeWindow: 60_000 }) : undefined
  }, async () => {
    throw new NotFound()
  })

  await app.ready()
  return app
}
