/**
 * Opens the database named by DATABASE_URL, applies pending migrations, and exposes the
 * repositories. Nothing else in the service holds a database handle.
 *
 * With DATABASE_SYNCHRONOUS=FULL (the default) on a file, commits are made durable by group
 * commit (db/durability.ts): an onSend hook holds every response until the commits made
 * before it are on disk. Error responses of 500 and above wait for nothing: they promise
 * nothing, and the one for a failed sync must be able to leave.
 */
import fp from 'fastify-plugin'
import type Database from 'better-sqlite3'
import { openDatabase, type Db } from '../db/client.js'
import type { GroupCommit } from '../db/durability.js'
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
    /** Group commit (DATABASE_SYNCHRONOUS=FULL on a file), or null. */
    durability: GroupCommit | null
  }
}

export default fp(async function dbPlugin (app) {
  const { config } = app
  const opened = openDatabase({
    path: config.databasePath,
    synchronous: config.databaseSynchronous,
    busyTimeoutMs: config.databaseBusyTimeoutMs,
    checkpoint: config.databaseCheckpoint,
    groupCommit: true,
    onCheckpointError: (message) => { app.log.error({ message }, 'WAL checkpoint failed') }
  })
  const { db, sqlite, durability } = opened
  try {
    runMigrations(db)
  } catch (err) {
    await opened.close()
    throw err
  }
  app.decorate('db', db)
  app.decorate('sqlite', sqlite)
  app.decorate('durability', durability)
  if (durability !== null) {
    durability.onFailure((err) => {
      app.log.fatal({ err }, 'database durability lost: no write is acknowledged until the service restarts')
    })
    app.addHook('onSend', (_request, reply, payload, done) => {
      if (reply.statusCode >= 500 || !durability.pending) { done(null, payload); return }
      durability.sync().then(() => { done(null, payload) }, (err: Error) => { done(err) })
    })
  }
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
