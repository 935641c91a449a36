/**
 * Reading the service's tables from a test, whichever backend the app runs on: the SQL is
 * SQLite's (`?` placeholders), turned into PostgreSQL's (`$1`…, `count(*)` as an integer) when
 * the app is on PostgreSQL (TEST_DATABASE=postgres). For plain selects and counts only.
 */
import type { FastifyInstance } from 'fastify'
import { queryPostgres } from './pg.js'

export async function rows<T = Record<string, unknown>> (app: FastifyInstance, sql: string, ...params: unknown[]): Promise<T[]> {
  if (app.database.kind === 'sqlite') return app.sqlite.prepare(sql).all(...params) as T[]
  let i = 0
  const text = sql.replace(/\?/g, () => `$${++i}`).replace(/count\(\*\)/gi, 'count(*)::int')
  return await queryPostgres(app.config.databaseUrl, text, params) as T[]
}

/** The first column of the first row, as a number (a `SELECT count(*) …`). */
export async function count (app: FastifyInstance, sql: string, ...params: unknown[]): Promise<number> {
  const [row] = await rows(app, sql, ...params)
  return Number(Object.values(row ?? {})[0])
}
