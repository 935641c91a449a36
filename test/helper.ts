/**
 * Test helpers: every test builds its own app on a real SQLite database (in memory by
 * default) through the same factory the server uses.
 */
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import type { Test } from 'tap'
import { buildApp, type BuildOptions } from '../src/app.js'
import { loadConfig, type Config, type Env } from '../src/config.js'

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

export async function refreshWithCookie (app: FastifyInstance, token: string, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: '/api/auth/refresh', cookies: { refresh_token: token }, headers })
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
