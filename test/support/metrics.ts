/** Helpers for the operations tests (metrics, audit, admin, logs, housekeeping). */
import type { FastifyInstance } from 'fastify'
import { bearer, login, register, PASSWORD } from './app.js'

/** The value of one sample of /metrics, e.g. metric(text, 'auth_login_total', { outcome: 'success' }); 0 when absent. */
export function metric (text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null || m[1] !== name) continue
    const found: Record<string, string> = {}
    for (const pair of (m[2] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)) found[pair[1]!] = pair[2]!
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(m[3])
  }
  return 0
}

export async function scrape (app: FastifyInstance): Promise<string> {
  const res = await app.inject({ url: '/metrics' })
  if (res.statusCode !== 200) throw new Error(`/metrics answered ${res.statusCode}`)
  return res.body
}

/** Registers `username` with the admin role and logs in: the access token and the user id. */
export async function adminSession (app: FastifyInstance, username = 'root-admin'): Promise<{ token: string, userId: string, headers: Record<string, string> }> {
  const res = await register(app, username)
  const userId = res.json().id as string
  await app.repos.users.setRoles(userId, ['user', 'admin'], new Date())
  const { accessToken } = await login(app, { username, password: PASSWORD, transport: 'body' })
  return { token: accessToken, userId, headers: bearer(accessToken) }
}
