/**
 * Every repository over one database handle: what the service (plugins/db.ts) and the CLIs
 * (src/cli) work with. Each prepares its statements once, here.
 */
import type { Db } from '../client.js'
import { createAuditRepository } from './audit.js'
import { createLeasesRepository } from './leases.js'
import { createOutboxRepository } from './outbox.js'
import { createServerSecretsRepository } from './server-secrets.js'
import { createSessionsRepository } from './sessions.js'
import { createSigningKeysRepository } from './signing-keys.js'
import { createUsersRepository } from './users.js'

export function createRepositories (db: Db) {
  return {
    users: createUsersRepository(db),
    sessions: createSessionsRepository(db),
    signingKeys: createSigningKeysRepository(db),
    serverSecrets: createServerSecretsRepository(db),
    audit: createAuditRepository(db),
    leases: createLeasesRepository(db),
    outbox: createOutboxRepository(db)
  }
}

export type Repositories = ReturnType<typeof createRepositories>
