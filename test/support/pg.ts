/**
 * PostgreSQL for the tests that need one: TEST_POSTGRES_URL is an administrator's URL on a
 * throwaway server (e.g. postgres://postgres@127.0.0.1:55432/postgres); each test gets a fresh
 * database created from it and dropped at its teardown. Without TEST_POSTGRES_URL those tests
 * are skipped, saying so.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import type { Test } from 'tap'

export const TEST_POSTGRES_URL = process.env.TEST_POSTGRES_URL

/** Options for `t.test` that skip it, with the reason, when no PostgreSQL is configured. */
export const needsPostgres = TEST_POSTGRES_URL === undefined || TEST_POSTGRES_URL === ''
  ? { skip: 'PostgreSQL tests skipped: set TEST_POSTGRES_URL to an administrator URL of a throwaway server' }
  : {}

/** Runs `work` with a client connected to the database at `url`, closed after it. */
export async function withPostgresClient<T> (url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await work(client)
  } finally {
    await client.end()
  }
}

async function admin<T> (work: (client: pg.Client) => Promise<T>, adminUrl = TEST_POSTGRES_URL): Promise<T> {
  if (adminUrl === undefined || adminUrl === '') throw new Error('TEST_POSTGRES_URL is not set')
  return await withPostgresClient(adminUrl, work)
}

/**
 * Creates an empty database and answers its URL; dropped at `t`'s teardown (after what was
 * registered before). `adminUrl`: another server than TEST_POSTGRES_URL's (a test's own cluster).
 */
export async function freshPostgresDatabase (t: Test | null, adminUrl = TEST_POSTGRES_URL): Promise<{ url: string, drop: () => Promise<void> }> {
  const name = `auth_test_${randomBytes(6).toString('hex')}`
  await admin(async (c) => { await c.query(`CREATE DATABASE ${name}`) }, adminUrl)
  const url = new URL(adminUrl!)
  url.pathname = `/${name}`
  const drop = async (): Promise<void> => { await admin(async (c) => { await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) }, adminUrl) }
  t?.teardown(drop)
  return { url: url.toString(), drop }
}

/** Runs `sql` on the database at `url` (for tests that look at or change rows directly); `types`: how to parse the values. */
export async function queryPostgres<R extends pg.QueryResultRow = Record<string, unknown>> (url: string, sql: string, params: unknown[] = [], types?: pg.CustomTypesConfig): Promise<R[]> {
  return await withPostgresClient(url, async (client) => (await client.query<R>({ text: sql, values: params, ...(types === undefined ? {} : { types }) })).rows)
}
