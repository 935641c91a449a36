/**
 * Reading and changing the service's tables from a test, whichever backend the app runs on: the
 * SQL is SQLite's (`?` placeholders), turned into PostgreSQL's (`$1`…, `count(*)` as an integer)
 * when the app is on PostgreSQL (TEST_DATABASE=postgres). Keep to SQL both dialects share.
 *
 * Values come back as SQLite answers them on both backends, so that one assertion holds on
 * both: timestamps as milliseconds since the epoch, JSON columns as their text, 64-bit ids and
 * counts as numbers, binary columns as Buffers. A `Date` parameter is bound as a timestamp on
 * PostgreSQL and as its milliseconds on SQLite (where the service stores it so).
 */
import type { FastifyInstance } from 'fastify'
import pg from 'pg'
import type { Test } from 'tap'
import { TEST_DATABASE } from './app.js'
import { freshPostgresDatabase, queryPostgres, withPostgresClient } from './pg.js'

const INT8 = 20
const TIMESTAMPTZ = 1184
const JSON_OID = 114
const JSONB = 3802

const asSqlite: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === INT8) return (v: string) => Number(v)
    if (oid === TIMESTAMPTZ) return (v: string) => (pg.types.getTypeParser(TIMESTAMPTZ, 'text')(v) as Date).getTime()
    if (oid === JSON_OID || oid === JSONB) return (v: string) => v
    return pg.types.getTypeParser(oid, format as 'text')
  }) as pg.CustomTypesConfig['getTypeParser']
}

function toPostgres (sql: string): string {
  let i = 0
  return sql.replace(/\?/g, () => `$${++i}`).replace(/count\(\*\)/gi, 'count(*)::int')
}

const sqliteParams = (params: unknown[]): unknown[] => params.map((p) => p instanceof Date ? p.getTime() : p)

export async function rows<T = Record<string, unknown>> (app: FastifyInstance, sql: string, ...params: unknown[]): Promise<T[]> {
  if (app.database.kind === 'sqlite') return app.sqlite.prepare(sql).all(...sqliteParams(params)) as T[]
  return await queryPostgres(app.config.databaseUrl, toPostgres(sql), params, asSqlite) as T[]
}

/** The first column of every row (better-sqlite3's `pluck`). */
export async function column<T = unknown> (app: FastifyInstance, sql: string, ...params: unknown[]): Promise<T[]> {
  return (await rows(app, sql, ...params)).map((row) => Object.values(row)[0] as T)
}

/** The first column of the first row, as a number (a `SELECT count(*) …`). */
export async function count (app: FastifyInstance, sql: string, ...params: unknown[]): Promise<number> {
  const [row] = await rows(app, sql, ...params)
  return Number(Object.values(row ?? {})[0])
}

/** Runs a statement that answers no rows (INSERT, UPDATE, DELETE, DROP): the number of rows it changed. */
export async function run (app: FastifyInstance, sql: string, ...params: unknown[]): Promise<number> {
  if (app.database.kind === 'sqlite') return app.sqlite.prepare(sql).run(...sqliteParams(params)).changes
  return await withPostgresClient(app.config.databaseUrl, async (client) => (await client.query(toPostgres(sql), params)).rowCount ?? 0)
}

/**
 * A DATABASE_URL that several apps of one test share, on the backend of the pass: a SQLite file
 * in the test's directory, or a fresh PostgreSQL database dropped at the test's teardown.
 */
export async function sharedDatabaseUrl (t: Test): Promise<string> {
  if (TEST_DATABASE === 'postgres') return (await freshPostgresDatabase(t)).url
  return `file:${t.testdir()}/auth.db`
}
