/**
 * CORS for the browser apps listed in CORS_ORIGINS, and for nobody else.
 *
 * - The allowed origin is reflected exactly, with `Access-Control-Allow-Credentials: true`
 *   (the refresh cookie must travel). A wildcard is never sent: browsers refuse it with
 *   credentials, and config refuses `*` in CORS_ORIGINS.
 * - Any other origin (and a request without Origin) gets no CORS headers at all, and its
 *   preflight is answered like an unknown route, so the browser keeps the response from the
 *   page. `Vary: Origin` is on every response, so a cache never hands one origin's answer to
 *   another.
 * - Preflights are cached by the browser for PREFLIGHT_MAX_AGE seconds (Chromium caps this at
 *   two hours). Removing an origin from CORS_ORIGINS still takes effect at once: the actual
 *   responses stop carrying `Access-Control-Allow-Origin`.
 * - CORS is not the CSRF defence: it only decides which pages may *read* responses. A
 *   cookie-authenticated request is checked in routes/auth/refresh-transport.ts.
 *
 * Registered before every route, so that preflights are answered before authentication and
 * rate limiting, and errors (401, 429) carry the headers too and are readable by the app.
 * @see https://github.com/fastify/fastify-cors
 */
import fastifyCors from '@fastify/cors'
import fp from 'fastify-plugin'

export const PREFLIGHT_MAX_AGE = 7200

export default fp(async function corsPlugin (app) {
  const allowed = new Set(app.config.corsOrigins)
  await app.register(fastifyCors, {
    origin: (origin, cb) => { cb(null, origin !== undefined && allowed.has(origin) ? origin : false) },
    credentials: true,
    methods: ['GET', 'HEAD', 'POST', 'DELETE'],
    // What the client library sends: the Bearer token, JSON bodies, and the custom header that
    // cookie-mode requests need when the cookie is SameSite=None (refresh-transport.ts).
    allowedHeaders: ['Authorization', 'Content-Type', 'X-Auth-Request'],
    exposedHeaders: ['WWW-Authenticate', 'Retry-After', 'X-Request-Id'],
    maxAge: PREFLIGHT_MAX_AGE,
    // A preflight without Access-Control-Request-Method would get a text/plain 400; every
    // error of the service is JSON, so such a request is treated as a plain OPTIONS.
    strictPreflight: false
  })
}, { name: 'cors', fastify: '5.x', dependencies: ['config'] })
