/**
 * The OpenAPI 3.1 document, generated from the route schemas (@fastify/swagger), served at
 * /docs/json (and /docs/yaml), with Swagger UI at /docs. Must be registered before the routes:
 * it collects them through an onRoute hook.
 *
 * The shared schemas registered with `app.addSchema` (Error, User, TokenResponse, ...) become
 * `components.schemas` under their own `$id`, so a `$ref: 'Error'` in a route reads as
 * `#/components/schemas/Error` in the document.
 *
 * Security schemes: `bearerAuth` (the access token, `Authorization: Bearer`) and
 * `refreshCookie` (the httpOnly refresh cookie, whose name is REFRESH_COOKIE_NAME). Routes
 * declare which one they take in their schema's `security`.
 * @see https://github.com/fastify/fastify-swagger
 * @see https://github.com/fastify/fastify-swagger-ui
 */
import { readFileSync } from 'node:fs'
import { STATUS_CODES } from '../src/tuning/node-http.js'
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import fp from 'fastify-plugin'

export const DOCS_PREFIX = '/docs'

/**
 * The service's version, from its package.json: the one above this file (plugins/ in the
 * sources, dist/plugins/ after the build, /app/dist/plugins/ in the image).
 */
export function serviceVersion (): string {
  for (const up of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { name?: string, version?: string }
      if (pkg.name === 'auth-service' && typeof pkg.version === 'string') return pkg.version
    } catch {}
  }
  throw new Error('package.json of auth-service not found above plugins/swagger')
}

export default fp(async function swaggerPlugin (app) {
  const { config } = app
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Auth service',
        version: serviceVersion(),
        description: 'Accounts, short-lived JWT access tokens, rotating refresh tokens and a public JWKS. ' +
          'Every error is JSON `{ statusCode, code, message }` with a stable `code`. ' +
          'Responses that carry tokens have `Cache-Control: no-store`.'
      },
      servers: [{ url: config.publicUrl }],
      tags: [
        { name: 'account', description: 'Register, the caller\'s account, password change' },
        { name: 'tokens', description: 'Login, refresh, logout' },
        { name: 'sessions', description: 'The caller\'s sessions' },
        { name: 'mfa', description: 'Second factor (TOTP, recovery codes), its login step and step-up' },
        { name: 'admin', description: 'User and session administration (role `admin`)' },
        { name: 'discovery', description: 'JWKS and discovery document for token verifiers' },
        { name: 'probes', description: 'Liveness and readiness' },
        { name: 'operations', description: 'Metrics' }
      ],
      components: {
        securitySchemes: {
          bearerAuth: {
            type: 'http',
            scheme: 'bearer',
            bearerFormat: 'JWT',
            description: 'An access token from login or refresh (`typ: at+jwt`, ES256 by default).'
          },
          refreshCookie: {
            type: 'apiKey',
            in: 'cookie',
            name: config.refresh.cookieName,
            description: 'The httpOnly refresh-token cookie set by a cookie-mode login or refresh (Path=/api/auth). ' +
              'Body-mode clients send `refreshToken` in the JSON body instead.'
          }
        }
      }
    },
    // Refresh and logout take an optional body (a cookie-mode request sends none): a request
    // body whose properties are all optional is documented as not required.
    transformObject: (documentObject) => {
      const doc = 'openapiObject' in documentObject ? documentObject.openapiObject : documentObject.swaggerObject
      for (const item of Object.values((doc as { paths?: Record<string, Record<string, unknown>> }).paths ?? {})) {
        for (const operation of Object.values(item)) {
          const body = (operation as { requestBody?: { required?: boolean, content?: Record<string, { schema?: { required?: unknown[] } }> } }).requestBody
          const schema = body?.content?.['application/json']?.schema
          if (body !== undefined && schema !== undefined && (schema.required === undefined || schema.required.length === 0)) body.required = false
          // A response without a description of its own gets the status's reason phrase.
          for (const [status, response] of Object.entries((operation as { responses?: Record<string, { description?: string }> }).responses ?? {})) {
            if (response.description === 'Default Response') response.description = STATUS_CODES[status] ?? 'Response'
          }
        }
      }
      return doc
    },
    refResolver: {
      // Shared schemas keep their $id as their component name (default: def-0, def-1, ...).
      buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}`
    }
  })

  await app.register(fastifySwaggerUi, {
    routePrefix: DOCS_PREFIX,
    staticCSP: true,
    uiConfig: { deepLinking: true, defaultModelsExpandDepth: 1 }
  })
}, { name: 'swagger', fastify: '5.x', dependencies: ['config'] })
