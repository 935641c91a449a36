/**
 * Test helpers: every test builds its own app on a real database through the same factory the
 * server uses: SQLite (in memory by default), or, with TEST_DATABASE=postgres, a fresh
 * PostgreSQL database per app (created from TEST_POSTGRES_URL, dropped at teardown) unless the
 * test names its own DATABASE_URL (a SQLite file it looks at).
 */
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import type { Test } from 'tap'
import { buildApp, type BuildOptions } from '../../src/app.js'
import { loadConfig, type Config, type Env } from '../../src/config.js'
import { freshPostgresDatabase } from './pg.js'

/** The backend buildTestApp uses when a test names none: TEST_DATABASE=postgres or SQLite. */
export const TEST_DATABASE = process.env.TEST_DATABASE === 'postgres' ? 'postgres' : 'sqlite'

/** Cheap argon2 parameters keep the suite fast; production defaults are tested in config tests. */
export const TEST_ENV: Env = {
  NODE_ENV: 'test',
  DATABASE_URL: ':memory:',
  LOG_LEVEL: 'silent',
  ARGON2_MEMORY_KIB: '1024',
  ARGON2_TIME_COST: '1',
  RATE_LIMIT_ENABLED: 'false',
  PUBLIC_URL: 'http://localhost:3000'
}

export function testConfig (overrides: Env = {}): Config {
  return loadConfig({ ...TEST_ENV, ...overrides })
}

export async function buildTestApp (t: Test, overrides: Env = {}, options: BuildOptions = {}): Promise<FastifyInstance> {
  if (TEST_DATABASE === 'postgres' && overrides.DATABASE_URL === undefined) {
    const database = await freshPostgresDatabase(null)
    let app: FastifyInstance
    try {
      app = await buildApp(testConfig({ ...overrides, DATABASE_URL: database.url }), options)
    } catch (err) {
      await database.drop()
      throw err
    }
    t.teardown(async () => {
      await app.close()
      await database.drop()
    })
    return app
  }
  const app = await buildApp(testConfig(overrides), options)
  t.teardown(() => app.close())
  return app
}

export const PASSWORD = 'correct horse battery staple'

export async function register (app: FastifyInstance, username = 'alice', password = PASSWORD): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: '/api/auth/register', payload: { username, password } })
}

export interface Login {
  res: LightMyRequestResponse
  accessToken: string
  /** The refresh token: from the cookie in cookie mode, from the body in body mode. */
  refreshToken: string
}

export async function login (app: FastifyInstance, opts: { username?: string, password?: string, transport?: 'cookie' | 'body', headers?: InjectOptions['headers'] } = {}): Promise<Login> {
  const res = await app.inject({
    method: 'POST',
    url: '/api/auth/login',
    headers: opts.headers,
    payload: { username: opts.username ?? 'alice', password: opts.password ?? PASSWORD, ...(opts.transport ? { transport: opts.transport } : {}) }
  })
  const body = res.json()
  const cookie = res.cookies.find((c) => c.name === 'refresh_token')
  return { res, accessToken: body.accessToken, refreshToken: body.refreshToken ?? cookie?.value }
}

/** What a browser on the service's own origin (TEST_ENV's PUBLIC_URL) sends with a cookie-mode request. */
export const SAME_ORIGIN = { origin: 'http://localhost:3000' }

/** A cookie-mode refresh as a browser page on our origin makes it (override `origin` to probe). */
export async function refreshWithCookie (app: FastifyInstance, token: string, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: '/api/auth/refresh', cookies: { refresh_token: token }, headers: { ...SAME_ORIGIN, ...headers } })
}

export async function refreshWithBody (app: FastifyInstance, token: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken: token } })
}

export function bearer (token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` }
}

export function cookieOf (res: LightMyRequestResponse, name = 'refresh_token') {
  return res.cookies.find((c) => c.name === name)
}

export interface VerificationHold {
  /** Verifications finished by argon2 and now waiting for `release()`. */
  readonly held: number
  /** Resolves once `n` verifications are held. */
  reached: (n: number) => Promise<void>
  /** Verifications started from now on are not held (those already held stay held). */
  stopHolding: () => void
  /** Lets every held verification return its (real) result; stops holding. */
  release: () => void
}

/**
 * Holds each password verification of `app` (login, password change) after argon2 has
 * answered, until `release()`. The real hasher still decides; the hold only keeps a request
 * between its password check and what it does next, so that a test can make other requests
 * land exactly there, or have many requests in flight at once, whatever the machine's speed.
 */
export function holdVerifications (app: FastifyInstance): VerificationHold {
  const { passwords } = app
  const { verify, verifyDummy } = passwords
  let open!: () => void
  const gate = new Promise<void>((resolve) => { open = resolve })
  let held = 0
  const waiters: Array<{ n: number, resolve: () => void }> = []
  const hold = async <T>(result: T): Promise<T> => {
    held++
    for (const w of waiters.filter((w) => held >= w.n)) { waiters.splice(waiters.indexOf(w), 1); w.resolve() }
    await gate
    return result
  }
  passwords.verify = async (phc, password) => await hold(await verify(phc, password))
  passwords.verifyDummy = async (password) => await hold(await verifyDummy(password))
  const stopHolding = (): void => { passwords.verify = verify; passwords.verifyDummy = verifyDummy }
  return {
    get held () { return held },
    reached: async (n) => { if (held < n) await new Promise<void>((resolve) => waiters.push({ n, resolve })) },
    stopHolding,
    release: () => { stopHolding(); open() }
  }
}

/** Resolves once `condition()` holds, checking between turns of the event loop. */
export async function until (condition: () => boolean | Promise<boolean>): Promise<void> {
  while (!await condition()) await new Promise((resolve) => setTimeout(resolve, 2))
}
