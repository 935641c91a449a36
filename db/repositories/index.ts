/**
 * Every repository over one database handle: what the service (plugins/db.ts) and the CLIs
 * (src/cli) work with. `Repositories` is the one interface the domain code sees; SQLite
 * (`createRepositories`, the modules beside this one) and PostgreSQL (`createPgRepositories`,
 * ./pg/index.ts) implement it, and nothing above db/ knows which one is behind it. The
 * PostgreSQL side is its own module so that a start on SQLite does not load it.
 */
import type { Db } from '../client.js'
import { createAccountDeletionRepository, type AccountDeletionRepository } from './account-deletion.js'
import { createAccountTokensRepository, type AccountTokensRepository } from './account-tokens.js'
import { createAuditRepository, type AuditRepository } from './audit.js'
import { createEmailVerificationRepository, type EmailVerificationRepository } from './email-verification.js'
import { createEmailChangeRepository, type EmailChangeRepository } from './email-change.js'
import { createLeasesRepository, type LeasesRepository } from './leases.js'
import { createMfaRepository, type MfaRepository } from './mfa.js'
import { createOutboxRepository, type OutboxRepository } from './outbox.js'
import { createPasskeysRepository, type PasskeysRepository } from './passkeys.js'
import { createPasswordResetsRepository, type PasswordResetsRepository } from './password-resets.js'
import { createServerSecretsRepository, type ServerSecretsRepository } from './server-secrets.js'
import { createSessionsRepository, type SessionsRepository } from './sessions.js'
import { createSigningKeysRepository, type SigningKeysRepository } from './signing-keys.js'
import { createUsersRepository, type UsersRepository } from './users.js'

/**
 * The repositories' methods, as the domain code calls them; each module declares its own
 * repository's (users.ts, sessions.ts, …) and both backends implement them (checked below by
 * `satisfies`). Every method is async but `audit.recordNow`, which is synchronous because it
 * is called inside a write's `alongside` (audit.ts).
 */
export interface Repositories {
  users: UsersRepository
  sessions: SessionsRepository
  signingKeys: SigningKeysRepository
  serverSecrets: ServerSecretsRepository
  audit: AuditRepository
  leases: LeasesRepository
  passkeys: PasskeysRepository
  mfa: MfaRepository
  outbox: OutboxRepository
  accountTokens: AccountTokensRepository
  emailVerification: EmailVerificationRepository
  passwordResets: PasswordResetsRepository
  emailChange: EmailChangeRepository
  accountDeletion: AccountDeletionRepository
}

export function createRepositories (db: Db): Repositories {
  return {
    users: createUsersRepository(db),
    sessions: createSessionsRepository(db),
    signingKeys: createSigningKeysRepository(db),
    serverSecrets: createServerSecretsRepository(db),
    audit: createAuditRepository(db),
    leases: createLeasesRepository(db),
    passkeys: createPasskeysRepository(db),
    mfa: createMfaRepository(db),
    outbox: createOutboxRepository(db),
    accountTokens: createAccountTokensRepository(db),
    emailVerification: createEmailVerificationRepository(db),
    passwordResets: createPasswordResetsRepository(db),
    emailChange: createEmailChangeRepository(db),
    accountDeletion: createAccountDeletionRepository(db)
  }
}
