/** Probes for orchestrators: never rate limited, never logged at info. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { ServiceUnavailable } from '../src/errors.js'
import { errors } from './schemas.js'

const Status = Type.Object({ status: Type.Literal('ok') })

const health: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/health', {
    schema: { summary: 'Liveness: the process is up', tags: ['probes'], response: { 200: Status } },
    config: { rateLimit: false },
    logLevel: 'warn'
  }, async () => ({ status: 'ok' as const }))

  app.get('/ready', {
    schema: { summary: 'Readiness: the database answers', tags: ['probes'], response: { 200: Status, ...errors(503) } },
    config: { rateLimit: false },
    logLevel: 'warn'
  }, async () => {
    try {
      await app.database.ping()
    } catch {
      throw new ServiceUnavailable('The database is not available')
    }
    if (app.databaseFileLost()) throw new ServiceUnavailable('The database file is gone; restore the data directory and restart the service')
    if (app.durability?.failure != null) throw new ServiceUnavailable('The database can no longer be written durably; restart the service')
    return { status: 'ok' as const }
  })
}

export default health
