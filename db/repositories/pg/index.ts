/**
 * The repositories over a PostgreSQL handle: the same interface as SQLite's (../index.ts),
 * checked by `satisfies`. Loaded only when the backend is PostgreSQL (plugins/db.ts), so a start
 * on SQLite loads neither these modules nor drizzle's pg-core.
 */
import type { PgDb } from '../../pg/client.js'
import type { Repositories } from '../index.js'
import { createPgAccountTokensRepository } from './account-tokens.js'
import { createPgAuditRepository } from './audit.js'
import { createPgEmailVerificationRepository } from './email-verification.js'
import { createPgAccountDeletionRepository } from './account-deletion.js'
import { createPgEmailChangeRepository } from './email-change.js'
import { createPgLeasesRepository } from './leases.js'
import { createPgMfaRepository } from './mfa.js'
import { createPgOutboxRepository } from './outbox.js'
import { createPgPasskeysRepository } from './passkeys.js'
import { createPgPasswordResetsRepository } from './password-resets.js'
import { createPgServerSecretsRepository } from './server-secrets.js'
import { createPgSessionsRepository } from './sessions.js'
import { createPgSigningKeysRepository } from './signing-keys.js'
import { createPgUsersRepository } from './users.js'

export function createPgRepositories (db: PgDb): Repositories {
  return {
    users: createPgUsersRepository(db),
    sessions: createPgSessionsRepository(db),
    signingKeys: createPgSigningKeysRepository(db),
    serverSecrets: createPgServerSecretsRepository(db),
    audit: createPgAuditRepository(db),
    leases: createPgLeasesRepository(db),
    passkeys: createPgPasskeysRepository(db),
    mfa: createPgMfaRepository(db),
    outbox: createPgOutboxRepository(db),
    accountTokens: createPgAccountTokensRepository(db),
    emailVerification: createPgEmailVerificationRepository(db),
    passwordResets: createPgPasswordResetsRepository(db),
    emailChange: createPgEmailChangeRepository(db),
    accountDeletion: createPgAccountDeletionRepository(db)
  } satisfies Repositories
}
