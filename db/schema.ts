/**
 * The service's tables. Timestamps are stored as integer milliseconds since the epoch
 * (Drizzle's `timestamp_ms` mode maps them to `Date`), which keeps comparisons in SQL cheap
 * and exact.
 *
 * Secrets never appear here in a usable form: passwords as argon2id PHC strings, refresh
 * tokens as SHA-256 digests of their 256-bit secret, private signing keys as (optionally
 * encrypted) PKCS#8.
 */
import { sql } from 'drizzle-orm'
import { blob, index, integer, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core'

export const users = sqliteTable('users', {
  id: text('id').primaryKey(),
  /** As registered (after NFKC and trimming), shown back to the user. */
  username: text('username').notNull(),
  /**
   * Lower-cased form (toLowerCase), the uniqueness key before fold keys; still unique, and
   * how a row of a name that shares its fold key with another is told apart at login.
   */
  usernameKey: text('username_key').notNull(),
  /**
   * NFKC + full case folding (db/username-keys.ts): the key names are found by and unique
   * by. Not a unique index, because databases from before fold keys may hold names that now
   * collide (`admin usernames collisions` lists them); a new name is checked against it in
   * its insert's transaction. Null only until the start that fills it in (db/migrate.ts).
   */
  usernameFold: text('username_fold'),
  /** The fold key's confusable skeleton (Unicode TS #39); a new name may not share one. */
  usernameSkeleton: text('username_skeleton'),
  passwordHash: text('password_hash').notNull(),
  /**
   * The account's e-mail address as given (trimmed, NFC, domain lower-cased), or null. Shown
   * back to the user and used as the recipient.
   */
  email: text('email'),
  /** The whole address lower-cased: the key addresses are unique by and found by at login. */
  emailKey: text('email_key'),
  /** When the owner proved the address (a verification link); null while unverified. */
  emailVerifiedAt: integer('email_verified_at', { mode: 'timestamp_ms' }),
  /** JSON array of role names. */
  roles: text('roles', { mode: 'json' }).$type<string[]>().notNull(),
  disabled: integer('disabled', { mode: 'boolean' }).notNull().default(false),
  createdAt: integer('created_at', { mode: 'timestamp_ms' }).notNull(),
  updatedAt: integer('updated_at', { mode: 'timestamp_ms' }).notNull(),
  passwordChangedAt: integer('password_changed_at', { mode: 'timestamp_ms' }).notNull(),
  /**
   * The security stamp: raised by everything that withdraws what a password check proved (a
   * password change, logout-all, ending every session, disabling the account). A login or a
   * password change that checked the password at one value commits only while it still holds,
   * so none of them can start or keep a session across such a change (sessions repository).
   */
  credentialEpoch: integer('credential_epoch').notNull().default(0)
}, (t) => [
  uniqueIndex('users_email_key_unique').on(t.emailKey),
  uniqueIndex('users_username_key_unique').on(t.usernameKey),
  index('users_username_fold_idx').on(t.usernameFold),
  index('users_username_skeleton_idx').on(t.usernameSkeleton)
])

/** One row per login. Its id is the `sid` claim of every access token issued for it. */
export const sessions = sqliteTable('sessions', {
  id: text('id').primaryKey(),
  userId: text('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  createdAt: integer('created_at', { mode: 'timestamp_ms' }).notNull(),
  lastUsedAt: integer('last_used_at', { mode: 'timestamp_ms' }).notNull(),
  /** Absolute end of the session: login time + SESSION_MAX_AGE. Never extended. */
  expiresAt: integer('expires_at', { mode: 'timestamp_ms' }).notNull(),
  /** Expiry of the session's current refresh token (sliding); the session idles out with it. */
  refreshExpiresAt: integer('refresh_expires_at', { mode: 'timestamp_ms' }).notNull(),
  userAgent: text('user_agent'),
  ip: text('ip'),
  revokedAt: integer('revoked_at', { mode: 'timestamp_ms' }),
  revokedReason: text('revoked_reason'),
  /**
   * How the user authenticated (RFC 8176 method names: `pwd`, `otp`, `recovery`, `webauthn`),
   * carried as the `amr` claim of every access token of the session; a step-up adds its method.
   */
  amr: text('amr', { mode: 'json' }).$type<string[]>().notNull().default(sql`'["pwd"]'`),
  /** When the user last proved a credential (login or step-up): the `auth_time` claim. Null on sessions from before it: their `created_at`. */
  authTime: integer('auth_time', { mode: 'timestamp_ms' })
}, (t) => [
  index('sessions_user_id_idx').on(t.userId),
  index('sessions_expires_at_idx').on(t.expiresAt)
])

/**
 * One row per refresh token, found by its id: a token is `selector ‖ secret`, the selector being
 * this id, encrypted (src/auth/refresh-token.ts), and `token_hash` the SHA-256 of the secret,
 * compared in constant time. Rows are appended in id order, so a rotation touches the newest
 * pages of this table and the session's row, and no index at all: every index here is keyed by
 * random values (a digest, a session id) or serves only pruning (`expires_at`), and would cost
 * each rotation random B-tree pages that no cache holds once there are many sessions
 * (docs/decisions/0005-refresh-tokens-name-their-row.md). Housekeeping finds expired rows by
 * walking ids from the oldest instead (sessions repository, `pruneExpired`).
 *
 * `session_id` is deliberately not a foreign key: ON DELETE CASCADE would need an index on it
 * (without one every deleted session scans this table). A token of a session that is gone
 * finds no session when presented (401) and is deleted with the other expired tokens by
 * housekeeping. Ids are not AUTOINCREMENT, so an id may come back after the newest rows were
 * pruned; a token naming such an id fails the digest check like any wrong secret.
 */
export const refreshTokens = sqliteTable('refresh_tokens', {
  id: integer('id').primaryKey(),
  /** SHA-256 of the token's secret; the token itself is never stored. */
  tokenHash: blob('token_hash', { mode: 'buffer' }).notNull(),
  sessionId: text('session_id').notNull(),
  parentId: integer('parent_id'),
  successorId: integer('successor_id'),
  createdAt: integer('created_at', { mode: 'timestamp_ms' }).notNull(),
  expiresAt: integer('expires_at', { mode: 'timestamp_ms' }).notNull(),
  spentAt: integer('spent_at', { mode: 'timestamp_ms' })
})

/**
 * The signing-key ring. `state` is one of next (published, not yet signing), current
 * (signing), retired (published until `removeAfter`, when its last token has expired).
 */
export const signingKeys = sqliteTable('signing_keys', {
  kid: text('kid').primaryKey(),
  alg: text('alg').notNull(),
  state: text('state', { enum: ['next', 'current', 'retired'] }).notNull(),
  publicJwk: text('public_jwk', { mode: 'json' }).$type<Record<string, unknown>>(),
  /** PKCS#8 PEM, or `enc:v1:` + AES-256-GCM ciphertext when KEY_ENCRYPTION_KEY is set. */
  privateKey: text('private_key').notNull(),
  createdAt: integer('created_at', { mode: 'timestamp_ms' }).notNull(),
  activatesAt: integer('activates_at', { mode: 'timestamp_ms' }).notNull(),
  retiredAt: integer('retired_at', { mode: 'timestamp_ms' }),
  removeAfter: integer('remove_after', { mode: 'timestamp_ms' })
}, (t) => [index('signing_keys_state_idx').on(t.state)])

/** Small server-side secrets generated on first start (e.g. the refresh-token derivation key). */
export const serverSecrets = sqliteTable('server_secrets', {
  name: text('name').primaryKey(),
  value: blob('value', { mode: 'buffer' }).notNull(),
  createdAt: integer('created_at', { mode: 'timestamp_ms' }).notNull().default(sql`(unixepoch() * 1000)`)
})

/**
 * Named, expiring leases, so that periodic work (housekeeping) runs on one instance at a time
 * when several share the database. Created by the first migration.
 */
export const leases = sqliteTable('leases', {
  name: text('name').primaryKey(),
  holder: text('holder').notNull(),
  expiresAt: integer('expires_at', { mode: 'timestamp_ms' }).notNull()
})

/**
 * Security events, for operators: who logged in, what was revoked, what an administrator
 * changed. Never a secret: no password, token or hash goes into any column or into `detail`.
 * No foreign keys: an event outlives the user or session it names. Pruned by housekeeping
 * after AUDIT_RETENTION.
 */
export const auditEvents = sqliteTable('audit_events', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  at: integer('at', { mode: 'timestamp_ms' }).notNull(),
  type: text('type').notNull(),
  userId: text('user_id'),
  sessionId: text('session_id'),
  ip: text('ip'),
  userAgent: text('user_agent'),
  /** The request id (also in the request's log line and its x-request-id header). */
  requestId: text('request_id'),
  /** A small JSON object with the event's particulars (reason, counts, roles, who acted). */
  detail: text('detail', { mode: 'json' }).$type<Record<string, unknown>>()
}, (t) => [
  index('audit_events_at_idx').on(t.at),
  index('audit_events_user_id_idx').on(t.userId)
])

/**
 * WebAuthn credentials (passkeys), several per user. `credential_id` is the authenticator's
 * credential id (base64url), unique across the service: an assertion names it, and it finds the
 * row. `public_key` is the COSE public key the registration proved; `counter` the highest
 * signature counter seen (0 for authenticators that keep none), which an assertion must exceed
 * when either is non-zero, or it comes from a cloned authenticator (src/auth/passkeys.ts).
 */
export const passkeys = sqliteTable('passkeys', {
  id: text('id').primaryKey(),
  userId: text('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  credentialId: text('credential_id').notNull(),
  publicKey: blob('public_key', { mode: 'buffer' }).notNull(),
  counter: integer('counter').notNull().default(0),
  /** JSON array of the transports the authenticator reported (usb, internal, hybrid, …). */
  transports: text('transports', { mode: 'json' }).$type<string[]>().notNull(),
  name: text('name').notNull(),
  createdAt: integer('created_at', { mode: 'timestamp_ms' }).notNull(),
  lastUsedAt: integer('last_used_at', { mode: 'timestamp_ms' })
}, (t) => [
  uniqueIndex('passkeys_credential_id_unique').on(t.credentialId),
  index('passkeys_user_id_idx').on(t.userId)
])

/**
 * Outstanding WebAuthn challenges, single use: stored as the SHA-256 of the challenge (the
 * challenge itself only travels to the client and back inside clientDataJSON), consumed by
 * one conditional DELETE that also checks purpose, owner and expiry. A registration challenge
 * belongs to the user who asked for it; a passkey-login challenge to nobody (the assertion
 * names the user).
 */
export const webauthnChallenges = sqliteTable('webauthn_challenges', {
  challengeHash: blob('challenge_hash', { mode: 'buffer' }).primaryKey(),
  purpose: text('purpose', { enum: ['register', 'login', 'factor'] }).notNull(),
  userId: text('user_id'),
  expiresAt: integer('expires_at', { mode: 'timestamp_ms' }).notNull()
}, (t) => [index('webauthn_challenges_expires_at_idx').on(t.expiresAt)])

/**
 * A user's TOTP factor (RFC 6238), at most one. Pending until a code is confirmed
 * (`confirmed_at` null); re-enrolling replaces a pending one. The secret is sealed under
 * KEY_ENCRYPTION_KEY when it is set (src/auth/totp.ts). `last_step` is the time step of the last
 * accepted code: a code of that step or an earlier one is refused, so each code works once.
 */
export const totpFactors = sqliteTable('totp_factors', {
  userId: text('user_id').primaryKey().references(() => users.id, { onDelete: 'cascade' }),
  secret: text('secret').notNull(),
  createdAt: integer('created_at', { mode: 'timestamp_ms' }).notNull(),
  confirmedAt: integer('confirmed_at', { mode: 'timestamp_ms' }),
  lastStep: integer('last_step')
})

/** Single-use recovery codes, as keyed digests (src/auth/recovery-codes.ts); a new set deletes the old. */
export const recoveryCodes = sqliteTable('recovery_codes', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  userId: text('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  codeHash: blob('code_hash', { mode: 'buffer' }).notNull(),
  createdAt: integer('created_at', { mode: 'timestamp_ms' }).notNull(),
  usedAt: integer('used_at', { mode: 'timestamp_ms' })
}, (t) => [uniqueIndex('recovery_codes_hash_unique').on(t.codeHash), index('recovery_codes_user_id_idx').on(t.userId)])

/**
 * The second step of a login (src/auth/mfa-challenge.ts): a password was right and a second
 * factor is due. Found by the SHA-256 of its 256-bit token; single use (`used_at`, set by a
 * conditional update), expires within minutes, bound to the login's transport and user agent
 * and to the user's security stamp at the time of the password check. `purpose` is `login`
 * (a factor is due) or `enroll` (MFA_REQUIRED_ROLES: the user must enrol one first).
 */
export const mfaChallenges = sqliteTable('mfa_challenges', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  tokenHash: blob('token_hash', { mode: 'buffer' }).notNull(),
  userId: text('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  purpose: text('purpose', { enum: ['login', 'enroll'] }).notNull(),
  transport: text('transport', { enum: ['cookie', 'body'] }).notNull(),
  userAgent: text('user_agent'),
  credentialEpoch: integer('credential_epoch').notNull(),
  createdAt: integer('created_at', { mode: 'timestamp_ms' }).notNull(),
  expiresAt: integer('expires_at', { mode: 'timestamp_ms' }).notNull(),
  usedAt: integer('used_at', { mode: 'timestamp_ms' })
}, (t) => [uniqueIndex('mfa_challenges_token_hash_unique').on(t.tokenHash), index('mfa_challenges_expires_at_idx').on(t.expiresAt)])

/**
 * Outgoing mail (the outbox). A row is written in the same transaction as the change that
 * causes the message (a token issued, a password changed), so a message exists exactly when
 * its cause committed; a worker delivers it afterwards (src/mail/outbox-worker.ts).
 *
 * The message is stored rendered (subject, text, HTML): what is delivered is what the templates
 * said when the change happened, and the worker needs nothing of the feature that wrote it.
 * The body may hold a one-time link until it is sent; a sent message keeps only its metadata
 * (its bodies are emptied when it is marked sent).
 *
 * `state`: pending (due at `next_attempt_at`) → sending (claimed by `claim_holder` until
 * `claim_until`; a claim that ran out is taken again, so a process killed mid-delivery
 * delays the message and loses none) → sent, or dead after the last attempt (`admin mail
 * retry` puts it back). `idempotency_key` is random and travels with every delivery attempt
 * (Message-ID, X-Idempotency-Key, the webhook's body), so a receiver can drop a repeat.
 * `last_error` holds the transport's error message, never a credential.
 */
export const mailOutbox = sqliteTable('mail_outbox', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  idempotencyKey: text('idempotency_key').notNull(),
  kind: text('kind').notNull(),
  recipient: text('recipient').notNull(),
  subject: text('subject').notNull(),
  textBody: text('text_body').notNull(),
  htmlBody: text('html_body').notNull(),
  state: text('state', { enum: ['pending', 'sending', 'sent', 'dead'] }).notNull(),
  attempts: integer('attempts').notNull().default(0),
  createdAt: integer('created_at', { mode: 'timestamp_ms' }).notNull(),
  nextAttemptAt: integer('next_attempt_at', { mode: 'timestamp_ms' }).notNull(),
  claimHolder: text('claim_holder'),
  claimUntil: integer('claim_until', { mode: 'timestamp_ms' }),
  lastError: text('last_error'),
  sentAt: integer('sent_at', { mode: 'timestamp_ms' })
}, (t) => [
  uniqueIndex('mail_outbox_idempotency_key_unique').on(t.idempotencyKey),
  index('mail_outbox_state_next_attempt_idx').on(t.state, t.nextAttemptAt)
])

/**
 * One-time tokens mailed to an account's owner: e-mail verification, password reset, the
 * confirmation of a new address and the undo of an address change. The token is 256 random
 * bits; only its SHA-256 is stored (`token_hash`), so a copy of the database spends none.
 *
 * A token is spent only by a POST (never by opening its link) and is deleted when spent. At
 * most one live token per account and purpose: issuing one deletes the older ones in the same
 * transaction. `email` is the address the token is about (the one to verify, the new one to
 * confirm, the old one an undo restores). `password_stamp` is the account's
 * `password_changed_at` when the token was issued: a reset token is void once the password
 * has changed since.
 */
export const accountTokens = sqliteTable('account_tokens', {
  tokenHash: blob('token_hash', { mode: 'buffer' }).primaryKey(),
  userId: text('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  purpose: text('purpose', { enum: ['verify_email', 'reset_password', 'change_email', 'undo_email_change'] }).notNull(),
  email: text('email'),
  passwordStamp: integer('password_stamp', { mode: 'timestamp_ms' }).notNull(),
  createdAt: integer('created_at', { mode: 'timestamp_ms' }).notNull(),
  expiresAt: integer('expires_at', { mode: 'timestamp_ms' }).notNull()
}, (t) => [
  index('account_tokens_user_purpose_idx').on(t.userId, t.purpose),
  index('account_tokens_expires_at_idx').on(t.expiresAt)
])
