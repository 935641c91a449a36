/**
 * A real listening server over loopback, talked to the way a client or an attacker would:
 * `buildApp` + `listen({ host: '127.0.0.1', port })`, then `fetch` (or a raw socket where
 * fetch refuses to send what the request needs). For the service as a child process (to kill
 * it mid-request), see process.ts.
 */
import { request as httpRequest } from 'node:http'
import { connect, createServer } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import { buildApp, type BuildOptions } from '../../src/app.js'
import type { Env } from '../../src/config.js'
import { PASSWORD, TEST_DATABASE, testConfig } from './app.js'
import { freshPostgresDatabase } from './pg.js'

export { PASSWORD }

/** The origin the test config's PUBLIC_URL names: the service's own origin for the Origin check. */
export const OWN_ORIGIN = 'http://localhost:3000'
export const FOREIGN_ORIGIN = 'https://evil.example'

/** A port free on 127.0.0.1 right now, for a server whose config must name its own origin. */
export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

export interface Served {
  app: FastifyInstance
  /** `http://127.0.0.1:<port>` */
  base: string
  port: number
}

/**
 * Builds the service with the test config plus `env` and listens on 127.0.0.1 (`port`, or a
 * free one). Closed at `t`'s teardown; with `t` null the caller closes `app`.
 */
export async function listen (t: Test | null, env: Env = {}, options: BuildOptions & { port?: number } = {}): Promise<Served> {
  const { port = 0, ...buildOptions } = options
  // TEST_DATABASE=postgres: a fresh database per server, as buildTestApp does (only with `t`,
  // whose teardown drops it; a caller that closes the app itself gets SQLite).
  const database = TEST_DATABASE === 'postgres' && t !== null && env.DATABASE_URL === undefined ? await freshPostgresDatabase(null) : null
  let app: FastifyInstance
  try {
    app = await buildApp(testConfig(database === null ? env : { ...env, DATABASE_URL: database.url }), buildOptions)
  } catch (err) {
    await database?.drop()
    throw err
  }
  t?.teardown(async () => {
    await app.close()
    await database?.drop()
  })
  await app.listen({ host: '127.0.0.1', port })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('server has no TCP address')
  return { app, base: `http://127.0.0.1:${address.port}`, port: address.port }
}

export interface Answer {
  status: number
  headers: Headers
  text: string
  /** The parsed JSON body, or undefined when the body is empty or not JSON. */
  json: any
  /** Every Set-Cookie line. */
  setCookies: string[]
}

export async function call (s: Served, path: string, init: { method?: string, headers?: Record<string, string>, json?: unknown, body?: string | Uint8Array } = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...init.headers }
  let body: string | Uint8Array | undefined = init.body
  if (init.json !== undefined) {
    body = JSON.stringify(init.json)
    headers['content-type'] ??= 'application/json'
  }
  const res = await fetch(s.base + path, { method: init.method ?? (body === undefined ? 'GET' : 'POST'), headers, body, redirect: 'manual' })
  const text = await res.text()
  let json: any
  try { json = text === '' ? undefined : JSON.parse(text) } catch { json = undefined }
  return { status: res.status, headers: res.headers, text, json, setCookies: res.headers.getSetCookie() }
}

/** The value the response set for a cookie, or undefined. */
export function cookieValue (a: Answer, name = 'refresh_token'): string | undefined {
  for (const line of a.setCookies) {
    const [pair] = line.split(';')
    const eq = pair!.indexOf('=')
    if (pair!.slice(0, eq).trim() === name) return decodeURIComponent(pair!.slice(eq + 1))
  }
  return undefined
}

export async function registerUser (s: Served, username: string, password = PASSWORD): Promise<Answer> {
  return await call(s, '/api/auth/register', { json: { username, password } })
}

export interface Tokens {
  accessToken: string
  refreshToken: string
  answer: Answer
}

/** A body-mode login: both tokens come back in the JSON body. */
export async function loginBody (s: Served, username: string, password = PASSWORD, headers: Record<string, string> = {}): Promise<Tokens> {
  const answer = await call(s, '/api/auth/login', { json: { username, password, transport: 'body' }, headers })
  if (answer.status !== 200) throw new Error(`login of ${username} answered ${answer.status} ${answer.text}`)
  return { accessToken: answer.json.accessToken, refreshToken: answer.json.refreshToken, answer }
}

/** A cookie-mode login: the refresh token comes back only in the cookie. */
export async function loginCookie (s: Served, username: string, password = PASSWORD, headers: Record<string, string> = {}): Promise<Tokens> {
  const answer = await call(s, '/api/auth/login', { json: { username, password }, headers })
  if (answer.status !== 200) throw new Error(`login of ${username} answered ${answer.status} ${answer.text}`)
  return { accessToken: answer.json.accessToken, refreshToken: cookieValue(answer)!, answer }
}

export async function refreshBody (s: Served, refreshToken: string): Promise<Answer> {
  return await call(s, '/api/auth/refresh', { json: { refreshToken } })
}

/** A cookie-mode refresh as a browser on our own origin sends it (with `Origin`), unless `headers` say otherwise. */
export async function refreshCookie (s: Served, cookieHeader: string, headers: Record<string, string> = {}): Promise<Answer> {
  return await call(s, '/api/auth/refresh', { method: 'POST', headers: { origin: OWN_ORIGIN, cookie: cookieHeader, ...headers } })
}

export async function me (s: Served, accessToken: string): Promise<Answer> {
  return await call(s, '/api/auth/me', { headers: { authorization: `Bearer ${accessToken}` } })
}

/**
 * A body-mode login sent from the loopback address `from` (any of 127.0.0.0/8 on Linux): the
 * server sees that client address without trusting any header. Its own connection (no agent),
 * so that many can be in flight at once.
 */
export async function loginFrom (s: Served, from: string, username: string, password: string): Promise<{ status: number, retryAfter: string | undefined }> {
  const body = JSON.stringify({ username, password, transport: 'body' })
  return await new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port: s.port,
      localAddress: from,
      method: 'POST',
      path: '/api/auth/login',
      agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }
    }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'] as string | undefined }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

/**
 * Sends bytes exactly as given over one TCP connection and returns what came back (status
 * line, headers, body), for requests `fetch` refuses to build (bare CR/LF in a header value,
 * a header larger than the parser allows).
 */
export async function rawRequest (s: Served, request: string | Buffer, timeoutMs = 5000): Promise<{ status: number, head: string, body: string, raw: string }> {
  return await new Promise((resolve, reject) => {
    const socket = connect(s.port, '127.0.0.1')
    const chunks: Buffer[] = []
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('raw request timed out')) }, timeoutMs)
    socket.on('data', (c) => chunks.push(c))
    socket.on('error', () => { /* a reset after the answer is fine; the answer is what counts */ })
    socket.on('close', () => {
      clearTimeout(timer)
      const raw = Buffer.concat(chunks).toString('latin1')
      const split = raw.indexOf('\r\n\r\n')
      const head = split === -1 ? raw : raw.slice(0, split)
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0)
      resolve({ status, head, body: split === -1 ? '' : raw.slice(split + 4), raw })
    })
    socket.write(request)
    // Half-close after the request so the server answers and closes.
    socket.end()
  })
}

/** `{ statusCode, code, message }` with statusCode equal to the HTTP status. */
export function isErrorBody (a: Answer): boolean {
  const b = a.json
  return typeof b === 'object' && b !== null && b.statusCode === a.status &&
    typeof b.code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(b.code) && typeof b.message === 'string' &&
    Object.keys(b).sort().join(',') === 'code,message,statusCode'
}
