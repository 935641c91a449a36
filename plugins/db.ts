/**
 * Opens the database named by DATABASE_URL, applies pending migrations, and exposes the
 * repositories. Nothing else in the service holds a database handle.
 */
import fp from 'fastify-plugin'
import type Database from 'better-sqlite3'
import { openDatabase, type Db } from '../db/client.js'
import { runMigrations } from '../db/migrate.js'
import { createAuditRepository } from '../db/repositories/audit.js'
import { createLeasesRepository } from '../db/repositories/leases.js'
import { createServerSecretsRepository } from '../db/repositories/server-secrets.js'
import { createSessionsRepository } from '../db/repositories/sessions.js'
import { createSigningKeysRepository } from '../db/repositories/signing-keys.js'
import { createUsersRepository } from '../db/repositories/users.js'

export interface Repositories {
  users: ReturnType<typeof createUsersRepository>
  sessions: ReturnType<typeof createSessionsRepository>
  signingKeys: ReturnType<typeof createSigningKeysRepository>
  serverSecrets: ReturnType<typeof createServerSecretsRepository>
  audit: ReturnType<typeof createAuditRepository>
  leases: ReturnType<typeof createLeasesRepository>
}

declare module 'fastify' {
  interface FastifyInstance {
    db: Db
    sqlite: Database.Database
    repos: Repositories
  }
}

export default fp(async function dbPlugin (app) {
  const { config } = app
  const opened = openDatabase({
    path: config.databasePath,
    synchronous: config.databaseSynchronous,
    busyTimeoutMs: config.databaseBusyTimeoutMs,
    checkpoint: config.databaseCheckpoint,
    onCheckpointError: (message) => { app.log.error({ message }, 'WAL checkpoint failed') }
  })
  const { db, sqlite } = opened
  try {
    runMigrations(db)
  } catch (err) {
    await opened.close()
    throw err
  }
  app.decorate('db', db)
  app.decorate('sqlite', sqlite)
  app.decorate('repos', {
    users: createUsersRepository(db),
    sessions: createSessionsRepository(db),
    signingKeys: createSigningKeysRepository(db),
    serverSecrets: createServerSecretsRepository(db),
    audit: createAuditRepository(db),
    leases: createLeasesRepository(db)
  })
  app.addHook('onClose', async () => {
    await opened.close()
  })
}, { name: 'db', fastify: '5.x', dependencies: ['config'] })
