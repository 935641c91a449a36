/**
 * Property-based fuzzing of every route, driven by the routes' own schemas.
 *
 * The routes and their schemas are collected from the app as it registers them (the
 * `onRoute` build option), so a route added later is fuzzed without touching this file. For
 * each route fast-check generates bodies from its body schema (valid ones, and ones broken
 * in every way: wrong types, missing and extra keys, hostile strings, any JSON at all), raw
 * bodies under assorted content types, random headers (Authorization, Cookie, Origin,
 * X-Forwarded-For) mixed with real tokens, and random methods, paths and query strings.
 *
 * Invariants, for every single request:
 * - never a 5xx, never a thrown error or a crash;
 * - an error is JSON `{ statusCode, code, message }` (exactly those keys, statusCode equal
 *   to the status, a SCREAMING_SNAKE code) and matches the route's declared schema for its
 *   status when there is one;
 * - a success matches the route's declared response schema for its status (compiled with ajv);
 * and afterwards /health still answers.
 *
 * Reproducible and bounded: one fixed seed (FUZZ_SEED overrides it; it is printed), a fixed
 * number of runs per property (FUZZ_RUNS scales them), and a time cap per property.
 */
import { Ajv, type ValidateFunction } from 'ajv'
import formats from 'ajv-formats'
import fc from 'fast-check'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse, RouteOptions } from 'fastify'
import t, { type Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { login, PASSWORD, register, testConfig } from '../support/app.js'

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed7)
const SCALE = Number(process.env.FUZZ_RUNS ?? 1)
const runs = (n: number): number => Math.max(1, Math.round(n * SCALE))
const TIME_CAP_MS = Number(process.env.FUZZ_TIME_CAP_MS ?? 30_000)

type Schema = Record<string, any>

interface FuzzRoute {
  method: string
  url: string
  body?: Schema
  params?: Schema
  response: Record<string, ValidateFunction>
}

// ---------------------------------------------------------------- the app and its routes

async function fuzzTarget (t: Test): Promise<{ app: FastifyInstance, routes: FuzzRoute[], tokens: { access: string, refresh: string, cookieRefresh: string } }> {
  const collected: RouteOptions[] = []
  // Mail on (delivered to the log, silent here), so that the routes that send mail are fuzzed
  // past their 503 MAIL_DISABLED; no floor on the forgot-password answer, which would only slow the runs.
  const app = await buildApp(testConfig({ MAIL_TRANSPORT: 'log', PASSWORD_FORGOT_MIN_DURATION: '0' }), { onRoute: (r) => { collected.push(r) } })
  t.teardown(() => app.close())

  // Declared response schemas, compiled once, with the shared schemas ($ref 'Error', ...).
  const ajv = new Ajv({ strict: false, allErrors: true })
  // ajv-formats is CommonJS: under NodeNext its plugin is the default export's `default`.
  const addFormats = (formats as unknown as { default: (a: Ajv) => Ajv }).default
  addFormats(ajv)
  for (const schema of Object.values(app.getSchemas())) ajv.addSchema(schema as Schema)
  const routes: FuzzRoute[] = []
  for (const r of collected) {
    const methods = (Array.isArray(r.method) ? r.method : [r.method]).filter((m) => m !== 'HEAD')
    for (const method of methods) {
      const schema = (r.schema ?? {}) as Schema
      const response: Record<string, ValidateFunction> = {}
      for (const [status, s] of Object.entries((schema.response ?? {}) as Record<string, Schema>)) {
        // A schema with its own $id (e.g. 'Session') may appear in several routes: compile a copy without it.
        const { $id: _drop, ...copy } = s
        response[status] = ajv.compile(JSON.parse(JSON.stringify(copy)))
      }
      routes.push({ method, url: r.url, body: schema.body, params: schema.params, response })
    }
  }

  await register(app)
  const body = await login(app, { transport: 'body' })
  const cookie = await login(app)
  return { app, routes, tokens: { access: body.accessToken, refresh: body.refreshToken, cookieRefresh: cookie.refreshToken } }
}

// ---------------------------------------------------------------- invariants

const ERROR_KEYS = 'code,message,statusCode'

function violation (route: FuzzRoute | undefined, req: InjectOptions, res: LightMyRequestResponse): string | null {
  if (res.statusCode >= 500) return `status ${res.statusCode}: ${res.body.slice(0, 200)}`
  if (req.method === 'HEAD' || res.statusCode === 204 || res.statusCode === 304) {
    return res.body === '' ? null : `status ${res.statusCode} with a body`
  }
  const type = String(res.headers['content-type'] ?? '')
  const isJson = type.startsWith('application/json')
  if (res.statusCode >= 400) {
    if (!isJson) return `error ${res.statusCode} is not JSON (${type})`
    let body: any
    try { body = JSON.parse(res.body) } catch { return `error ${res.statusCode} body is not valid JSON` }
    if (typeof body !== 'object' || body === null || Object.keys(body).sort().join(',') !== ERROR_KEYS) return `error body keys: ${res.body.slice(0, 200)}`
    if (body.statusCode !== res.statusCode) return `error statusCode ${body.statusCode} differs from status ${res.statusCode}`
    if (typeof body.code !== 'string' || !/^[A-Z][A-Z0-9_]*$/.test(body.code)) return `error code ${String(body.code)} is not SCREAMING_SNAKE`
    if (typeof body.message !== 'string' || body.message === '') return 'error message missing'
    if (/\bat .*:\d+:\d+|SQLITE_|node_modules/.test(body.message)) return `error message leaks internals: ${body.message}`
  }
  const validate = route?.response[String(res.statusCode)]
  if (validate !== undefined && isJson) {
    const body = JSON.parse(res.body)
    if (!validate(body)) return `status ${res.statusCode} does not match the declared schema: ${JSON.stringify(validate.errors).slice(0, 300)} body ${res.body.slice(0, 200)}`
  }
  return null
}

// ---------------------------------------------------------------- arbitraries

const HOSTILE = [
  '', ' ', '__proto__', 'constructor', 'prototype', 'toString', "' OR '1'='1", '"; DROP TABLE users; --', '../../../etc/passwd',
  '%00', '\u0000', '\r\nSet-Cookie: x=1', '\u202e', '\ufeff', '\ud800', 'ＡＬＩＣＥ', 'alice', 'Alice ', 'a'.repeat(64), 'a'.repeat(65),
  'b'.repeat(257), 'x'.repeat(4096), '${jndi:ldap://x}', '{{7*7}}', '<script>alert(1)</script>', 'null', 'undefined', 'NaN', '-1', '1e309',
  PASSWORD, 'correct horse battery staple '.repeat(9)
]

/** encodeURIComponent that does not throw on lone surrogates (they become U+FFFD, as on the wire). */
const enc = (x: string): string => encodeURIComponent(Buffer.from(x, 'utf8').toString('utf8'))

const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 80 })

function stringArb (s: Schema, tokens: string[]): fc.Arbitrary<string> {
  const min = s.minLength ?? 0
  const max = Math.min(s.maxLength ?? 300, 600)
  return fc.oneof(
    { weight: 4, arbitrary: fc.string({ minLength: min, maxLength: max }) },
    { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: Math.min(min, 20), maxLength: Math.min(max, 40) }) },
    { weight: 2, arbitrary: fc.constantFrom(...HOSTILE) },
    { weight: 2, arbitrary: fc.constantFrom(...tokens) }
  )
}

/** Values that fit the schema (mostly; strings also take hostile and token values). */
function fromSchema (s: Schema | undefined, tokens: string[], depth = 0): fc.Arbitrary<unknown> {
  if (s === undefined || depth > 4) return fc.jsonValue({ maxDepth: 2 })
  if (Array.isArray(s.anyOf)) return fc.oneof(...s.anyOf.map((x: Schema) => fromSchema(x, tokens, depth + 1)))
  if ('const' in s) return fc.constant(s.const)
  if (Array.isArray(s.enum)) return fc.constantFrom(...s.enum)
  switch (s.type) {
    case 'object': {
      const props = (s.properties ?? {}) as Record<string, Schema>
      const model = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, fromSchema(v, tokens, depth + 1)]))
      return fc.record(model, { requiredKeys: (s.required ?? []) as string[] })
    }
    case 'string': return stringArb(s, tokens)
    case 'integer': return fc.integer({ min: s.minimum ?? -1e6, max: s.maximum ?? 1e6 })
    case 'number': return fc.double({ noNaN: true, noDefaultInfinity: true })
    case 'boolean': return fc.boolean()
    case 'null': return fc.constant(null)
    case 'array': return fc.array(fromSchema(s.items, tokens, depth + 1), { maxLength: 4 })
    default: return fc.jsonValue({ maxDepth: 2 })
  }
}

/** A schema-shaped value broken in one way: a key dropped, a key added, a value of the wrong type. */
function broken (s: Schema | undefined, tokens: string[]): fc.Arbitrary<unknown> {
  const base = fromSchema(s, tokens)
  return fc.oneof(
    base,
    fc.tuple(base, fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 2 })).map(([v, k, x]) =>
      typeof v === 'object' && v !== null && !Array.isArray(v) ? { ...v, [k]: x } : v),
    fc.tuple(base, fc.nat()).map(([v]) => {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return v
      const keys = Object.keys(v)
      if (keys.length === 0) return v
      const copy: Record<string, unknown> = { ...v }
      delete copy[keys[0]!]
      return copy
    }),
    fc.tuple(base, fc.jsonValue({ maxDepth: 3 })).map(([v, x]) => {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return x
      const keys = Object.keys(v)
      return keys.length === 0 ? x : { ...v, [keys[keys.length - 1]!]: x }
    }),
    fc.jsonValue({ maxDepth: 4 })
  )
}

function mutateToken (token: string): fc.Arbitrary<string> {
  return fc.tuple(fc.nat({ max: token.length - 1 }), fc.constantFrom('A', '-', '_', '.', '', '==', '%')).map(([i, c]) => token.slice(0, i) + c + token.slice(i + 1))
}

function headersArb (tokens: { access: string, refresh: string, cookieRefresh: string }): fc.Arbitrary<Record<string, string>> {
  const bearer = fc.oneof(
    fc.constant(`Bearer ${tokens.access}`),
    mutateToken(tokens.access).map((x) => `Bearer ${x}`),
    fc.constant(`Bearer ${tokens.refresh}`),
    printable.map((x) => `Bearer ${x}`),
    printable
  )
  const cookie = fc.oneof(
    fc.constant(`refresh_token=${tokens.cookieRefresh}`),
    mutateToken(tokens.cookieRefresh).map((x) => `refresh_token=${x}`),
    printable.map((x) => `refresh_token=${x}`),
    printable,
    fc.constant(`refresh_token=a; refresh_token=${tokens.cookieRefresh}`),
    fc.constant('__proto__=1; constructor=2')
  )
  const origin = fc.oneof(fc.constant('http://localhost:3000'), fc.constant('https://evil.example'), fc.constant('null'), printable)
  return fc.record({
    authorization: bearer,
    cookie,
    origin,
    'x-forwarded-for': fc.oneof(fc.ipV4(), fc.ipV6(), printable),
    'sec-fetch-site': fc.constantFrom('same-origin', 'same-site', 'cross-site', 'none'),
    'accept-encoding': fc.constantFrom('gzip', 'br', 'identity', '*'),
    'if-none-match': printable
  }, { requiredKeys: [] })
}

const CONTENT_TYPES = [
  'application/json', 'application/json; charset=utf-8', 'application/json; charset=utf-16', 'application/problem+json',
  'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/octet-stream',
  'application/xml', 'APPLICATION/JSON', 'application/json;', 'json', ''
]

// ---------------------------------------------------------------- the properties

t.test('fuzzing every route with schema-driven and malformed requests', async (t) => {
  t.comment(`fast-check seed ${SEED} (set FUZZ_SEED to reproduce another run), FUZZ_RUNS scale ${SCALE}`)
  const { app, routes, tokens } = await fuzzTarget(t)
  t.ok(routes.length >= 12, `${routes.length} routes collected from the app`)
  t.ok(routes.some((r) => r.url === '/api/auth/login' && r.body !== undefined), 'body schemas are known')
  const tokenValues = [tokens.access, tokens.refresh, tokens.cookieRefresh]
  const byKey = new Map(routes.map((r) => [`${r.method} ${r.url}`, r]))
  const undeclared = new Map<string, number>()
  let requests = 0
  const found = new Set<string>()

  async function send (route: FuzzRoute | undefined, req: InjectOptions): Promise<void> {
    requests++
    const res = await app.inject(req)
    if (route !== undefined && res.statusCode < 500 && route.response[String(res.statusCode)] === undefined && Object.keys(route.response).length > 0) {
      const key = `${route.method} ${route.url} → ${res.statusCode}`
      undeclared.set(key, (undeclared.get(key) ?? 0) + 1)
    }
    const problem = violation(route, req, res)
    if (problem !== null) {
      const message = `${String(req.method)} ${String(req.url).slice(0, 120)}: ${problem}`
      // FUZZ_COLLECT=1 lists every distinct problem instead of stopping at the first (for exploring).
      if (process.env.FUZZ_COLLECT !== '1') throw new Error(message)
      found.add(`${res.statusCode} ${problem.slice(0, 160)}`)
    }
  }

  function urlFor (route: FuzzRoute, param: string): string {
    return route.url.replace(/:[A-Za-z]+/g, enc(param))
  }

  const params = { seed: SEED, interruptAfterTimeLimit: TIME_CAP_MS, markInterruptAsFailure: false }
  const started = Date.now()

  // 1. Each route with a body schema: schema-shaped and broken JSON bodies, random headers.
  // (Routes are drawn by index so that a counterexample prints short.)
  const bodyRoutes = routes.map((r, i) => [r, i] as const).filter(([r]) => r.body !== undefined).map(([, i]) => i)
  const bodyCase = fc.constantFrom(...bodyRoutes).chain((index) => fc.record({
    route: fc.constant(index),
    body: broken(routes[index]!.body, tokenValues),
    headers: headersArb(tokens),
    param: stringArb({ minLength: 1, maxLength: 80 }, tokenValues)
  }))
  await fc.assert(fc.asyncProperty(bodyCase, async ({ route: index, body, headers, param }) => {
    const route = routes[index]!
    await send(route, { method: route.method as InjectOptions['method'], url: urlFor(route, param), headers: { ...headers, 'content-type': 'application/json' }, payload: JSON.stringify(body) })
  }), { ...params, numRuns: runs(2500) })

  // 2. Every route: raw bodies (invalid JSON, bytes, form data) under assorted content types.
  const rawCase = fc.record({
    route: fc.nat({ max: routes.length - 1 }),
    contentType: fc.constantFrom(...CONTENT_TYPES),
    payload: fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v).slice(0, -1)), // truncated JSON
      fc.constantFrom('{"__proto__":{"x":1}}', '{"constructor":{"prototype":{"x":1}}}', '{"a":1,"a":2}', '\ufeff{}', 'null', '[]', '{}', '')
    ),
    headers: headersArb(tokens)
  })
  await fc.assert(fc.asyncProperty(rawCase, async ({ route: index, contentType, payload, headers }) => {
    const route = routes[index]!
    const h: Record<string, string> = { ...headers }
    if (contentType !== '') h['content-type'] = contentType
    await send(route, { method: route.method as InjectOptions['method'], url: urlFor(route, 'x'), headers: h, payload })
  }), { ...params, numRuns: runs(1200) })

  // 3. Random methods, paths and query strings, known prefixes and pure noise.
  const segment = fc.oneof(
    fc.constantFrom('api', 'auth', 'login', 'refresh', 'sessions', 'me', '.well-known', 'jwks.json', '..', '.', '%2e%2e', '%2F', '%00', '%ZZ', '', 'docs', 'health', 'ready', 'metrics', 'admin', 'users'),
    fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 20 }).map((x) => x.replace(/[#?]/g, '')),
    fc.string({ maxLength: 10 }).map(enc),
    fc.constant('a'.repeat(200))
  )
  const pathCase = fc.record({
    method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'),
    path: fc.oneof(
      // (A leading "//" or "/\\" would make light-my-request parse a host out of the path.)
      fc.array(segment, { minLength: 1, maxLength: 6 }).map((s) => ('/' + s.join('/')).replace(/^\/[/\\]+/, '/')),
      fc.tuple(fc.nat({ max: routes.length - 1 }), stringArb({ maxLength: 200 }, tokenValues)).map(([i, p]) => urlFor(routes[i]!, p))
    ),
    query: fc.option(fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 20 }), { maxKeys: 3 }).map((q) => new URLSearchParams(q).toString()), { nil: undefined }),
    headers: headersArb(tokens)
  })
  await fc.assert(fc.asyncProperty(pathCase, async ({ method, path, query, headers }) => {
    const url = query === undefined ? path : `${path}?${query}`
    const route = byKey.get(`${method} ${path}`)
    await send(route, { method: method as InjectOptions['method'], url, headers })
  }), { ...params, numRuns: runs(1200) })

  t.comment(`${requests} requests in ${Date.now() - started} ms`)
  for (const f of found) t.comment(`problem: ${f}`)
  t.same([...found], [], 'no invariant violated')
  for (const [key, n] of [...undeclared].sort()) t.comment(`undeclared status (answered, but not in the route's response schema): ${key} ×${n}`)
  t.ok(requests >= runs(2000), `at least ${runs(2000)} requests were made (${requests})`)

  const health = await app.inject({ url: '/health' })
  t.equal(health.statusCode, 200, '/health still answers')
  const relogin = await login(app, { password: PASSWORD, transport: 'body' })
  t.ok([200, 429].includes(relogin.res.statusCode), 'login still works (or is held back by the failed-login limit the fuzzing tripped)')
})
