import { readFileSync } from 'node:fs'
import { Validator } from '@seriousme/openapi-schema-validator'
import type { RouteOptions } from 'fastify'
import t, { type Test } from 'tap'
import { buildTestApp } from '../support/app.js'

interface Operation {
  security?: Array<Record<string, string[]>>
  requestBody?: { required?: boolean, content: Record<string, unknown> }
  parameters?: Array<{ in: string, name: string }>
  responses: Record<string, unknown>
}
type Doc = {
  openapi: string
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, unknown>, securitySchemes: Record<string, Record<string, unknown>> }
}

/** Every route as registered, with the methods and schema it was registered with. */
async function appWithRoutes (t: Test, env: Record<string, string> = {}) {
  const routes: RouteOptions[] = []
  const app = await buildTestApp(t, env, { onRoute: (route) => { routes.push(route) } })
  return { app, routes }
}

/** The (method, path) pairs the document must list: every route but HEAD twins and hidden ones. */
function documentable (routes: RouteOptions[]): Array<{ method: string, path: string, route: RouteOptions }> {
  const out: Array<{ method: string, path: string, route: RouteOptions }> = []
  for (const route of routes) {
    const schema = route.schema as { hide?: boolean } | undefined
    if (schema?.hide === true) continue
    for (const method of [route.method].flat()) {
      if (method === 'HEAD') continue
      out.push({ method: method.toLowerCase(), path: route.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}'), route })
    }
  }
  return out
}

function refsOf (value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) refsOf(v, out)
  else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === '$ref' && typeof v === 'string') out.push(v)
      else refsOf(v, out)
    }
  }
  return out
}

t.test('the document at /docs/json is valid OpenAPI 3.1', async (t) => {
  const { app } = await appWithRoutes(t)
  const res = await app.inject({ url: '/docs/json' })
  t.equal(res.statusCode, 200)
  const doc = res.json() as Doc
  t.equal(doc.openapi, '3.1.0')
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  t.equal((doc as unknown as { info: { version: string } }).info.version, pkg.version, 'info.version is the package\'s version')
  const validator = new Validator()
  const result = await validator.validate(structuredClone(doc))
  t.same(result.errors, undefined, 'no validation errors')
  t.equal(result.valid, true)
  t.equal(validator.version, '3.1')
})

t.test('every registered route is in the document, with its request schema and every response status', async (t) => {
  const { app, routes } = await appWithRoutes(t)
  const doc = (await app.inject({ url: '/docs/json' })).json() as Doc
  const expected = documentable(routes)
  t.ok(expected.length >= 20, `collected ${expected.length} routes`)
  // The admin, metrics and auth routes are among them (so the collector is not empty by accident).
  for (const p of ['/api/auth/login', '/api/admin/users/{user}/disable', '/metrics', '/api/admin/audit']) {
    t.ok(expected.some((e) => e.path === p), `${p} collected`)
  }

  for (const { method, path, route } of expected) {
    const op = doc.paths[path]?.[method]
    t.ok(op, `${method.toUpperCase()} ${path} is documented`)
    if (op === undefined) continue
    const schema = (route.schema ?? {}) as { body?: unknown, querystring?: unknown, params?: unknown, response?: Record<string, unknown>, security?: unknown }
    if (schema.body !== undefined) t.ok(op.requestBody?.content['application/json'], `${path}: request body`)
    if (schema.params !== undefined) t.ok(op.parameters?.some((p) => p.in === 'path'), `${path}: path parameters`)
    if (schema.querystring !== undefined) t.ok(op.parameters?.some((p) => p.in === 'query'), `${path}: query parameters`)
    for (const status of Object.keys(schema.response ?? {})) {
      t.ok(op.responses[status], `${method.toUpperCase()} ${path}: response ${status}`)
    }
    t.ok(Object.keys(op.responses).length > 0, `${path}: at least one response`)
    t.same(op.security, schema.security, `${path}: security as declared`)
  }
  // Nothing documented that does not exist.
  const documented = Object.entries(doc.paths).flatMap(([p, item]) => Object.keys(item).map((m) => `${m} ${p}`))
  t.same(documented.sort(), expected.map((e) => `${e.method} ${e.path}`).sort())
})

t.test('every $ref resolves, and the shared schemas are components under their own names', async (t) => {
  const { app } = await appWithRoutes(t)
  const doc = (await app.inject({ url: '/docs/json' })).json() as Doc
  const refs = refsOf(doc)
  t.ok(refs.length > 0)
  for (const ref of new Set(refs)) {
    t.match(ref, /^#\/components\/schemas\//, `${ref} is local`)
    t.ok(doc.components.schemas[ref.replace('#/components/schemas/', '')], `${ref} exists`)
  }
  for (const name of ['Error', 'User', 'TokenResponse']) t.ok(doc.components.schemas[name], `components.schemas.${name}`)
  const login = doc.paths['/api/auth/login']!.post!
  t.match(login.responses['401'], { content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } })
})

t.test('security schemes: Bearer access token and the refresh cookie', async (t) => {
  const { app } = await appWithRoutes(t, { REFRESH_COOKIE_NAME: '__Host-rt' })
  const doc = (await app.inject({ url: '/docs/json' })).json() as Doc
  t.match(doc.components.securitySchemes.bearerAuth, { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' })
  t.match(doc.components.securitySchemes.refreshCookie, { type: 'apiKey', in: 'cookie', name: '__Host-rt' })
  for (const p of ['/api/auth/refresh', '/api/auth/logout']) {
    const op = doc.paths[p]!.post!
    t.same(op.security, [{ refreshCookie: [] }, {}], `${p}: cookie or (body mode) nothing`)
    t.equal(op.requestBody?.required, false, `${p}: the body is optional`)
  }
  t.equal(doc.paths['/api/auth/login']!.post!.requestBody?.required, true)
})

t.test('a route declares bearerAuth exactly when it answers 401 AUTHORIZATION_REQUIRED without a token', async (t) => {
  const { app } = await appWithRoutes(t)
  const doc = (await app.inject({ url: '/docs/json' })).json() as Doc
  let bearerRoutes = 0
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const url = path.replace(/\{[^}]+\}/g, 'x')
      const res = await app.inject({ method: method.toUpperCase() as 'GET', url, ...(op.requestBody ? { payload: {} } : {}) })
      const needsToken = res.statusCode === 401 && res.json().code === 'AUTHORIZATION_REQUIRED'
      const declares = op.security?.some((s) => 'bearerAuth' in s) === true
      t.equal(declares, needsToken, `${method.toUpperCase()} ${path}: ${res.statusCode}`)
      if (declares) bearerRoutes++
    }
  }
  t.ok(bearerRoutes >= 10, `${bearerRoutes} Bearer operations`)
})

t.test('the UI is served at /docs', async (t) => {
  const { app } = await appWithRoutes(t)
  const res = await app.inject({ url: '/docs' })
  const page = res.statusCode === 302 ? await app.inject({ url: String(res.headers.location) }) : res
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /text\/html/)
  t.match(page.body, /swagger/i)
})

t.test('with METRICS_ENABLED=false, /metrics is neither served nor documented', async (t) => {
  const { app } = await appWithRoutes(t, { METRICS_ENABLED: 'false' })
  const doc = (await app.inject({ url: '/docs/json' })).json() as Doc
  t.notOk(doc.paths['/metrics'])
  t.equal((await app.inject({ url: '/metrics' })).statusCode, 404)
})
