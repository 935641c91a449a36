/**
 * The only reader of `process.env`. `loadConfig(env)` parses every setting once, checks it
 * against `ConfigSchema`, applies the production safety rules, and returns a frozen object
 * that is passed to `buildApp`. Tests build their config with `loadConfig({ ... })` too.
 */
import { existsSync } from 'node:fs'
import { isIP } from 'node:net'
import { availableParallelism, userInfo } from 'node:os'
import { dirname, resolve } from 'node:path'
import { parse as parseMs } from '@lukeed/ms'
import { Type, type Static, type TSchema } from 'typebox'
import { Value } from 'typebox/value'

const Seconds = Type.Integer({ minimum: 1 })
const Algorithm = Type.Union([Type.Literal('ES256'), Type.Literal('RS256'), Type.Literal('EdDSA'), Type.Literal('HS256')])
const SameSite = Type.Union([Type.Literal('Strict'), Type.Literal('Lax'), Type.Literal('None')])
const Limit = Type.Object({ max: Type.Integer({ minimum: 1 }), windowSeconds: Seconds })

export const ConfigSchema = Type.Object({
  env: Type.Union([Type.Literal('production'), Type.Literal('development'), Type.Literal('test')]),
  port: Type.Integer({ minimum: 0, maximum: 65535 }),
  host: Type.String({ minLength: 1 }),
  publicUrl: Type.String({ minLength: 1 }),
  /** The origin of PUBLIC_URL (scheme://host[:port]), used by the Origin check. */
  publicOrigin: Type.String(),
  databaseUrl: Type.String({ minLength: 1 }),
  /** The backend DATABASE_URL names: a path, `:memory:` or `file:` is SQLite; `postgres://` or `postgresql://` is PostgreSQL. */
  databaseKind: Type.Union([Type.Literal('sqlite'), Type.Literal('postgres')]),
  /**
   * SQLite: the better-sqlite3 path derived from DATABASE_URL (':memory:' or a file path).
   * PostgreSQL: the URL without its password, for messages and logs.
   */
  databasePath: Type.String({ minLength: 1 }),
  /** PostgreSQL: connections in the pool of each instance (db/pg/client.ts). */
  databasePoolSize: Type.Integer({ minimum: 1, maximum: 1000 }),
  /** PostgreSQL: statement_timeout of every connection, and the bound on connecting at start. */
  databaseStatementTimeoutMs: Type.Integer({ minimum: 100, maximum: 600_000 }),
  /** PostgreSQL: the URL's `sslmode` (disable when absent). */
  databaseSsl: Type.Union([Type.Literal('disable'), Type.Literal('require'), Type.Literal('verify-ca'), Type.Literal('verify-full')]),
  /** PostgreSQL: a PEM file of the CA(s) the server's certificate must chain to (DATABASE_SSL_CA). */
  databaseSslCa: Type.Optional(Type.String({ minLength: 1 })),
  databaseSynchronous: Type.Union([Type.Literal('FULL'), Type.Literal('NORMAL')]),
  databaseBusyTimeoutMs: Type.Integer({ minimum: 0 }),
  /** Who checkpoints the WAL: a background thread (the default), or SQLite inside a commit (db/client.ts). */
  databaseCheckpoint: Type.Union([Type.Literal('background'), Type.Literal('auto')]),
  /**
   * REDIS_URL (`redis://` or `rediss://`): where several instances share their per-IP rate limits
   * and the per-account login throttle. Null: each instance counts in its own memory.
   */
  redisUrl: Type.Union([Type.String({ pattern: '^rediss?://' }), Type.Null()]),
  /**
   * libuv's thread pool (UV_THREADPOOL_SIZE), where argon2 runs, besides the group commit's
   * fdatasync and file I/O. Password hashes use all its threads but one (src/auth/passwords.ts), so that many
   * run at once. Default: the CPU count plus one, at least 3 and at most 17 (docs/performance.md).
   */
  threadPoolSize: Type.Integer({ minimum: 1, maximum: 1024 }),
  /** The nice value of the pool's threads (src/tuning/thread-priority.ts): above the event loop's 0, so it runs first. 0 leaves them alone. */
  threadPoolNice: Type.Integer({ minimum: 0, maximum: 19 }),
  /**
   * REQUEST_TIMEOUT: how long a client may take to send a whole request (headers and body).
   * Node's headersTimeout, requestTimeout and its connection check interval all follow it.
   */
  requestTimeout: Seconds,
  logLevel: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l))),
  /**
   * Which X-Forwarded-For entries to believe (Fastify's trustProxy): false, a hop count (the
   * client is the address that many proxies in front saw), or the proxies' addresses/CIDRs.
   * `true` (believe the leftmost entry, which the client writes) only outside production.
   */
  trustProxy: Type.Union([Type.Boolean(), Type.Integer({ minimum: 1 }), Type.Array(Type.String(), { minItems: 1 })]),
  jwt: Type.Object({
    issuer: Type.String({ minLength: 1 }),
    audience: Type.String({ minLength: 1 }),
    algorithm: Algorithm,
    secret: Type.Optional(Type.String()),
    accessTokenTtl: Seconds,
    /** Up to this fraction of the TTL is taken off at random, so clients do not refresh in lockstep. */
    accessTokenJitter: Type.Number({ minimum: 0, maximum: 0.5 }),
    /** How far a clock may be off when `exp`/`nbf` are checked. */
    clockToleranceSeconds: Type.Integer({ minimum: 0, maximum: 300 })
  }),
  keys: Type.Object({
    /** A 32-byte key (base64 or hex) that encrypts private signing keys at rest. */
    encryptionKey: Type.Optional(Type.String()),
    rotationInterval: Seconds,
    /** How long JWKS consumers may cache the key set; the next key is published at least this long before it signs. */
    jwksMaxAge: Seconds,
    rsaModulusLength: Type.Integer({ minimum: 2048 }),
    /** How often the key ring is checked for a due rotation (and reloaded from the database). */
    checkInterval: Seconds
  }),
  refresh: Type.Object({
    ttl: Seconds,
    sessionMaxAge: Seconds,
    reuseInterval: Type.Integer({ minimum: 0 }),
    cookieName: Type.String({ minLength: 1, pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' }),
    cookieSameSite: SameSite,
    transportDefault: Type.Union([Type.Literal('cookie'), Type.Literal('body')])
  }),
  corsOrigins: Type.Array(Type.String()),
  allowRegistration: Type.Boolean(),
  /**
   * MFA_REQUIRED_ROLES: users holding any of these roles must have a second factor; `*` means
   * everyone. Such a user without one is made to enrol at login (docs/mfa.md).
   */
  mfaRequiredRoles: Type.Array(Type.String({ minLength: 1 })),
  /** Accounts' e-mail addresses must be verified before they log in (docs/accounts.md). */
  emailVerification: Type.Object({
    /** REQUIRE_EMAIL_VERIFICATION: login before verification answers 403; registration needs an address and is silent about taken ones. */
    required: Type.Boolean(),
    /** EMAIL_VERIFICATION_TTL: how long a verification link works. */
    ttl: Seconds
  }),
  /** What a login may name the account by (LOGIN_IDENTIFIERS): `username`, `email`, or both. */
  loginIdentifiers: Type.Array(Type.Union([Type.Literal('username'), Type.Literal('email')]), { minItems: 1 }),
  demo: Type.Object({
    /** Serve the demo single-page app at /demo (DEMO_ENABLED; off in production unless set). */
    enabled: Type.Boolean(),
    /** The API origin the demo talks to (DEMO_API_URL); empty: the demo's own origin. */
    apiOrigin: Type.String()
  }),
  password: Type.Object({
    minLength: Type.Integer({ minimum: 1, maximum: 256 }),
    maxLength: Type.Integer({ minimum: 1, maximum: 4096 }),
    /** argon2id parameters: memory in KiB, iterations, lanes. */
    memoryCost: Type.Integer({ minimum: 1024 }),
    timeCost: Type.Integer({ minimum: 1 }),
    parallelism: Type.Integer({ minimum: 1, maximum: 16 })
  }),
  rateLimit: Type.Object({
    enabled: Type.Boolean(),
    global: Limit,
    login: Limit,
    register: Limit,
    refresh: Limit,
    /** POST /email/verification per client address. */
    emailVerification: Limit,
    /** POST /email/verification per account: how many verification mails one account may ask for. */
    emailVerificationPerAccount: Limit,
    /** POST /email/verify per client address. */
    emailVerify: Limit,
    /** Failed logins allowed per username per window, from any number of addresses. */
    loginFailuresPerUser: Limit,
    /** Password-reset requests (`/password/forgot`) per client address. */
    passwordForgot: Limit,
    /** Password resets (`/password/reset`) per client address. */
    passwordReset: Limit,
    /**
     * Reset mails one account gets from `/password/forgot` per window, whoever asks (applied
     * whether or not RATE_LIMIT_ENABLED is on: it keeps an inbox from being flooded).
     */
    passwordResetMailsPerUser: Limit,
    /** Address-change requests per account per window (each sends a mail to the address given). */
    emailChangePerAccount: Limit
  }),
  /** The password-reset flow (docs/accounts.md, "Password reset"). */
  passwordReset: Type.Object({
    /** How long a mailed reset link works (PASSWORD_RESET_TTL). */
    ttl: Seconds,
    /**
     * The least time `/password/forgot` takes to answer (ms): every answer is held until then,
     * so that the work done for an existing account does not show in the response time.
     */
    forgotMinDurationMs: Type.Integer({ minimum: 0, maximum: 10_000 })
  }),
  /** Changing the account's address (docs/accounts.md): how long the confirmation and the undo link work. */
  emailChange: Type.Object({
    ttl: Seconds,
    undoTtl: Seconds
  }),
  /**
   * Deleting one's account without re-entering the password: allowed when the access token's
   * `auth_time` is at most this old (ACCOUNT_DELETE_RECENT_LOGIN; src/auth/account-deletion.ts).
   */
  accountDeletion: Type.Object({
    recentLogin: Seconds
  }),
  metrics: Type.Object({
    enabled: Type.Boolean(),
    /** When set, /metrics is served on its own listener (HOST:port) and not on the main port. */
    port: Type.Union([Type.Integer({ minimum: 0, maximum: 65535 }), Type.Null()]),
    /**
     * When set, /metrics (on either listener) answers only `Authorization: Bearer <token>`.
     * In production, without METRICS_PORT or METRICS_TOKEN, /metrics is not served on the main
     * port at all (plugins/metrics.ts).
     */
    token: Type.Optional(Type.String({ minLength: 1 }))
  }),
  housekeeping: Type.Object({
    /** How often expired tokens, ended sessions and old audit rows are pruned; 0 switches it off. */
    interval: Type.Integer({ minimum: 0 }),
    batchSize: Type.Integer({ minimum: 1, maximum: 100_000 }),
    /** How long ended (revoked or expired) sessions are kept before they are deleted. */
    sessionRetention: Type.Integer({ minimum: 0 }),
    /** How long audit events are kept. */
    auditRetention: Seconds
  }),
  /** Outgoing mail (docs/mail.md): delivered from the outbox by the worker; `none` without any mail setting. */
  mail: Type.Object({
    transport: Type.Union([Type.Literal('none'), Type.Literal('smtp'), Type.Literal('webhook'), Type.Literal('log')]),
    smtpUrl: Type.Optional(Type.String()),
    from: Type.Optional(Type.String({ minLength: 1 })),
    webhookUrl: Type.Optional(Type.String()),
    webhookSecret: Type.Optional(Type.String()),
    /** The product's name in every message (MAIL_PRODUCT_NAME). */
    productName: Type.String({ minLength: 1 }),
    /** Where links in messages point: APP_URL, else PUBLIC_URL (no trailing slash). */
    linkBase: Type.String({ minLength: 1 }),
    /** A directory whose files replace built-in templates (src/mail/templates.ts). */
    templatesDir: Type.Optional(Type.String()),
    /** Delivery attempts before a message is dead-lettered. */
    maxAttempts: Type.Integer({ minimum: 1, maximum: 100 }),
    /** The first retry's delay (ms); each later one doubles, up to retryMaxMs, with jitter. */
    retryBaseMs: Type.Integer({ minimum: 1 }),
    retryMaxMs: Type.Integer({ minimum: 1 }),
    /** How often the worker looks for due messages besides being woken by an enqueue (ms). */
    pollIntervalMs: Type.Integer({ minimum: 10 }),
    /** The longest one step of a hand-over may take (ms); a whole hand-over, twice that; a claim, three times. */
    sendTimeoutMs: Type.Integer({ minimum: 100, maximum: 600_000 }),
    batchSize: Type.Integer({ minimum: 1, maximum: 1000 })
  })
})

export type Config = Static<typeof ConfigSchema>
export type Env = Record<string, string | undefined>

export class ConfigError extends Error {
  override name = 'ConfigError'
}

/** `900`, `900s`, `15m`, `7d` → seconds. */
export function parseDuration (name: string, value: string): number {
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed)
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(trimmed)
  const ms = match ? parseMs(trimmed) : undefined
  if (ms === undefined || !Number.isFinite(ms)) {
    throw new ConfigError(`${name}: "${value}" is not a duration (use seconds or a number with s, m, h or d, e.g. 15m)`)
  }
  return Math.round(ms / 1000)
}

/** `30s`, `500ms`, `1h`, or a plain number of seconds → milliseconds. */
function parseMillis (name: string, value: string): number {
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000
  const ms = /^\d+(?:\.\d+)?\s*(ms|s|m|h|d)$/.test(trimmed) ? parseMs(trimmed) : undefined
  if (ms === undefined || !Number.isFinite(ms)) {
    throw new ConfigError(`${name}: "${value}" is not a duration (use seconds or a number with ms, s, m, h or d, e.g. 30s)`)
  }
  return Math.round(ms)
}

function optional (env: Env, name: string): string | undefined {
  const raw = env[name]
  return raw === undefined || raw.trim() === '' ? undefined : raw.trim()
}

function parseBoolean (name: string, value: string): boolean {
  const v = value.trim().toLowerCase()
  if (['true', '1', 'yes', 'on'].includes(v)) return true
  if (['false', '0', 'no', 'off'].includes(v)) return false
  throw new ConfigError(`${name}: "${value}" is not a boolean (true or false)`)
}

const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal'])

/** TRUST_PROXY: false/0, true, a hop count, or a comma-separated list of addresses and CIDRs. */
function parseTrustProxy (name: string, value: string): boolean | number | string[] {
  const v = value.trim()
  if (/^\d+$/.test(v)) return Number(v) === 0 ? false : Number(v)
  if (/^(true|false|yes|no|on|off)$/i.test(v)) return parseBoolean(name, v)
  return v.split(',').map((s) => s.trim()).filter(Boolean).map((entry) => {
    const [address = '', prefix, extra] = entry.split('/')
    const family = isIP(address)
    const bits = family === 4 ? 32 : 128
    const ok = PROXY_NAMES.has(entry) ||
      (family !== 0 && extra === undefined && (prefix === undefined || (/^\d+$/.test(prefix) && Number(prefix) <= bits)))
    if (!ok) throw new ConfigError(`${name}: "${entry}" is not an IP address, a CIDR or one of ${[...PROXY_NAMES].join(', ')} (or give a hop count, e.g. 1)`)
    return entry
  })
}

function parseInteger (name: string, value: string): number {
  if (!/^-?\d+$/.test(value.trim())) throw new ConfigError(`${name}: "${value}" is not an integer`)
  return Number(value)
}

function parseOrigin (name: string, value: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new ConfigError(`${name}: "${value}" is not a URL`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`${name}: "${value}" must be an http or https URL`)
  }
  return url.origin
}

function databasePathOf (url: string): string {
  if (url === ':memory:' || url === 'file::memory:') return ':memory:'
  return url.startsWith('file:') ? url.slice('file:'.length) : url
}

/** REDIS_URL: a redis:// or rediss:// URL. The message never repeats the value: it may hold a password. */
function parseRedisUrl (name: string, value: string): string {
  const v = value.trim()
  let url: URL
  try {
    url = new URL(v)
  } catch {
    throw new ConfigError(`${name} is not a URL; use redis://[user:password@]host[:port][/db] or rediss://... for TLS`)
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new ConfigError(`${name}: the scheme ${url.protocol} is not allowed; use redis://[user:password@]host[:port][/db] or rediss://... for TLS`)
  }
  if (url.hostname === '') throw new ConfigError(`${name} names no host; use redis://host[:port]`)
  return v
}

/**
 * The warning logged at start when the data lives in PostgreSQL (where several instances are
 * the point) but nothing shares the counters between them; undefined otherwise.
 */
export function sharedCountersWarning (c: Pick<Config, 'databaseUrl' | 'redisUrl'>): string | undefined {
  if (c.redisUrl !== null || !/^postgres(ql)?:\/\//i.test(c.databaseUrl)) return undefined
  return 'DATABASE_URL is PostgreSQL but REDIS_URL is unset: several instances would each count alone (per-IP rate limits and the per-account login throttle), so a client gets up to N times the configured allowance; set REDIS_URL (docs/redis.md)'
}

const SSL_MODES = ['disable', 'require', 'verify-ca', 'verify-full'] as const

/**
 * What DATABASE_URL names. A path, `:memory:` or a `file:` URL is SQLite; `postgres://` and
 * `postgresql://` are PostgreSQL; anything else that starts like a URL scheme (`mysql://`,
 * `http://`, `x:`) is refused rather than taken as a file name beside the service.
 */
function databaseOf (url: string): { kind: 'sqlite' | 'postgres', path: string, ssl: Config['databaseSsl'] } {
  if (url === ':memory:' || url.startsWith('file:')) return { kind: 'sqlite', path: databasePathOf(url), ssl: 'disable' }
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase()
  if (scheme === undefined) return { kind: 'sqlite', path: url, ssl: 'disable' }
  if (scheme !== 'postgres' && scheme !== 'postgresql') {
    throw new ConfigError(`DATABASE_URL: the scheme "${scheme}:" is not supported; use postgres://user:password@host:port/database for PostgreSQL, or a file path or file:<path> for SQLite`)
  }
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new ConfigError('DATABASE_URL: not a valid postgres:// URL; use postgres://user:password@host:port/database')
  }
  if (parsed.hostname === '' && !parsed.searchParams.has('host')) {
    throw new ConfigError('DATABASE_URL: the postgres:// URL names no host; use postgres://user:password@host:port/database')
  }
  const sslmode = parsed.searchParams.get('sslmode') ?? 'disable'
  if (!(SSL_MODES as readonly string[]).includes(sslmode)) {
    throw new ConfigError(`DATABASE_URL: sslmode=${sslmode} is not supported; use one of ${SSL_MODES.join(', ')}`)
  }
  const shown = new URL(parsed)
  if (shown.password !== '') shown.password = '***'
  return { kind: 'postgres', path: shown.toString(), ssl: sslmode as Config['databaseSsl'] }
}

function isLoopback (origin: string): boolean {
  const host = new URL(origin).hostname
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host)
}

/** Reads an optional setting through `parse`, or returns the default. */
function read<T> (env: Env, name: string, fallback: T, parse: (name: string, value: string) => T): T {
  const raw = env[name]
  return raw === undefined || raw.trim() === '' ? fallback : parse(name, raw)
}

const str = (_name: string, v: string): string => v.trim()

function limit (env: Env, prefix: string, max: number, window: string): Static<typeof Limit> {
  return {
    max: read(env, `${prefix}_MAX`, max, parseInteger),
    windowSeconds: read(env, `${prefix}_WINDOW`, parseDuration(prefix, window), parseDuration)
  }
}

/** Which environment variable sets each checked field (paths as in the schema's errors). */
const ENV_NAMES: Record<string, string> = {
  '/port': 'PORT',
  '/host': 'HOST',
  '/publicUrl': 'PUBLIC_URL',
  '/databaseUrl': 'DATABASE_URL',
  '/databaseSynchronous': 'DATABASE_SYNCHRONOUS',
  '/databaseBusyTimeoutMs': 'DATABASE_BUSY_TIMEOUT_MS',
  '/databaseCheckpoint': 'DATABASE_CHECKPOINT',
  '/redisUrl': 'REDIS_URL',
  '/databasePoolSize': 'DATABASE_POOL_SIZE',
  '/databaseStatementTimeoutMs': 'DATABASE_STATEMENT_TIMEOUT_MS',
  '/databaseSslCa': 'DATABASE_SSL_CA',
  '/threadPoolSize': 'UV_THREADPOOL_SIZE',
  '/threadPoolNice': 'THREAD_POOL_NICE',
  '/logLevel': 'LOG_LEVEL',
  '/trustProxy': 'TRUST_PROXY',
  '/jwt/issuer': 'JWT_ISSUER',
  '/jwt/audience': 'JWT_AUDIENCE',
  '/jwt/algorithm': 'JWT_ALGORITHM',
  '/jwt/accessTokenTtl': 'ACCESS_TOKEN_TTL',
  '/jwt/accessTokenJitter': 'ACCESS_TOKEN_JITTER',
  '/jwt/clockToleranceSeconds': 'JWT_CLOCK_TOLERANCE',
  '/keys/rotationInterval': 'KEY_ROTATION_INTERVAL',
  '/keys/jwksMaxAge': 'JWKS_MAX_AGE',
  '/keys/rsaModulusLength': 'RSA_MODULUS_LENGTH',
  '/keys/checkInterval': 'KEY_CHECK_INTERVAL',
  '/refresh/ttl': 'REFRESH_TOKEN_TTL',
  '/refresh/sessionMaxAge': 'SESSION_MAX_AGE',
  '/refresh/reuseInterval': 'REFRESH_REUSE_INTERVAL',
  '/refresh/cookieName': 'REFRESH_COOKIE_NAME',
  '/refresh/cookieSameSite': 'REFRESH_COOKIE_SAMESITE',
  '/refresh/transportDefault': 'REFRESH_TRANSPORT_DEFAULT',
  '/demo/apiOrigin': 'DEMO_API_URL',
  '/emailVerification/ttl': 'EMAIL_VERIFICATION_TTL',
  '/password/minLength': 'PASSWORD_MIN_LENGTH',
  '/password/memoryCost': 'ARGON2_MEMORY_KIB',
  '/password/timeCost': 'ARGON2_TIME_COST',
  '/password/parallelism': 'ARGON2_PARALLELISM',
  '/metrics/port': 'METRICS_PORT',
  '/housekeeping/interval': 'HOUSEKEEPING_INTERVAL',
  '/housekeeping/batchSize': 'HOUSEKEEPING_BATCH_SIZE',
  '/housekeeping/sessionRetention': 'SESSION_RETENTION',
  '/housekeeping/auditRetention': 'AUDIT_RETENTION',
  '/mail/transport': 'MAIL_TRANSPORT',
  '/mail/from': 'MAIL_FROM',
  '/mail/productName': 'MAIL_PRODUCT_NAME',
  '/mail/maxAttempts': 'MAIL_MAX_ATTEMPTS',
  '/mail/retryBaseMs': 'MAIL_RETRY_BASE',
  '/mail/retryMaxMs': 'MAIL_RETRY_MAX',
  '/mail/pollIntervalMs': 'MAIL_POLL_INTERVAL',
  '/mail/sendTimeoutMs': 'MAIL_SEND_TIMEOUT',
  '/mail/batchSize': 'MAIL_BATCH_SIZE',
  '/passwordReset/ttl': 'PASSWORD_RESET_TTL',
  '/passwordReset/forgotMinDurationMs': 'PASSWORD_FORGOT_MIN_DURATION',
  '/emailChange/ttl': 'EMAIL_CHANGE_TTL',
  '/emailChange/undoTtl': 'EMAIL_CHANGE_UNDO_TTL',
  '/accountDeletion/recentLogin': 'ACCOUNT_DELETE_RECENT_LOGIN'
}
for (const [key, prefix] of Object.entries({
  global: 'RATE_LIMIT', login: 'RATE_LIMIT_LOGIN', register: 'RATE_LIMIT_REGISTER', refresh: 'RATE_LIMIT_REFRESH',
  emailVerification: 'RATE_LIMIT_EMAIL_VERIFICATION',
  emailVerificationPerAccount: 'RATE_LIMIT_EMAIL_VERIFICATION_PER_ACCOUNT',
  emailVerify: 'RATE_LIMIT_EMAIL_VERIFY',
  loginFailuresPerUser: 'RATE_LIMIT_LOGIN_FAILURES_PER_USER',
  passwordForgot: 'RATE_LIMIT_PASSWORD_FORGOT',
  passwordReset: 'RATE_LIMIT_PASSWORD_RESET',
  passwordResetMailsPerUser: 'RATE_LIMIT_PASSWORD_RESET_MAILS_PER_USER',
  emailChangePerAccount: 'RATE_LIMIT_EMAIL_CHANGE'
})) {
  ENV_NAMES[`/rateLimit/${key}/max`] = `${prefix}_MAX`
  ENV_NAMES[`/rateLimit/${key}/windowSeconds`] = `${prefix}_WINDOW`
}

/** Settings read with `parseDuration`: their limits are said in seconds, with the other units offered. */
const DURATIONS = new Set(['ACCESS_TOKEN_TTL', 'EMAIL_VERIFICATION_TTL', 'JWT_CLOCK_TOLERANCE', 'KEY_ROTATION_INTERVAL', 'JWKS_MAX_AGE', 'KEY_CHECK_INTERVAL',
  'REFRESH_TOKEN_TTL', 'SESSION_MAX_AGE', 'REFRESH_REUSE_INTERVAL', 'HOUSEKEEPING_INTERVAL', 'SESSION_RETENTION', 'AUDIT_RETENTION',
  'PASSWORD_RESET_TTL',
  'EMAIL_CHANGE_TTL', 'EMAIL_CHANGE_UNDO_TTL', 'ACCOUNT_DELETE_RECENT_LOGIN',
  ...Object.values(ENV_NAMES).filter((n) => n.endsWith('_WINDOW'))])

/** Settings read with `parseMillis`: their limits are said in milliseconds. */
const MILLIS = new Set(['MAIL_RETRY_BASE', 'MAIL_RETRY_MAX', 'MAIL_POLL_INTERVAL', 'MAIL_SEND_TIMEOUT', 'PASSWORD_FORGOT_MIN_DURATION'])

/** What `schema` allows, said for a person: "use one of A, B", "use an integer from 0 to 65535". */
function allowed (name: string, schema: TSchema): string {
  const s = schema as { anyOf?: Array<{ const?: unknown }>, type?: string, minimum?: number, maximum?: number, minLength?: number, pattern?: string }
  const literals = s.anyOf?.map((m) => m.const).filter((c) => c !== undefined)
  if (literals !== undefined && literals.length > 0) return `use one of ${literals.join(', ')}`
  if (s.type === 'integer' && MILLIS.has(name)) {
    const range = s.maximum !== undefined ? `from ${s.minimum ?? 0}ms to ${s.maximum}ms` : `of at least ${s.minimum ?? 0}ms`
    return `use a duration ${range} (seconds, or a number with ms, s, m, h or d, e.g. 30s)`
  }
  if (s.type === 'integer' || s.type === 'number') {
    const duration = DURATIONS.has(name)
    const what = duration ? 'a duration' : s.type === 'integer' ? 'an integer' : 'a number'
    const n = (x: number): string => duration ? `${x}s` : String(x)
    const unit = duration ? ' (seconds, or a number with s, m, h or d, e.g. 15m)' : ''
    if (s.minimum !== undefined && s.maximum !== undefined) return `use ${what} from ${n(s.minimum)} to ${n(s.maximum)}${unit}`
    if (s.minimum !== undefined) return `use ${what} of at least ${n(s.minimum)}${unit}`
    if (s.maximum !== undefined) return `use ${what} of at most ${n(s.maximum)}${unit}`
  }
  if (s.pattern !== undefined) return `use a value matching ${s.pattern}`
  if (s.minLength !== undefined) return 'use a value that is not empty'
  return 'see docs/configuration.md'
}

function notAllowed (name: string, value: string, schema: TSchema): string {
  return `${name}: '${value}' is not allowed; ${allowed(name, schema)}`
}

/** Returns `parsed` when `schema` accepts it; otherwise the setting's one-line error. */
function checked<T> (name: string, raw: string, schema: TSchema, parsed: T): T {
  if (!Value.Check(schema, parsed)) throw new ConfigError(notAllowed(name, raw, schema))
  return parsed
}

export function loadConfig (env: Env = process.env): Config {
  const nodeEnv = env.NODE_ENV === 'production' ? 'production' : env.NODE_ENV === 'test' ? 'test' : 'development'
  // Checked here, before PUBLIC_URL's default is derived from it: an out-of-range PORT is PORT's fault.
  const port = read(env, 'PORT', 3000, (n, v) => checked(n, v, ConfigSchema.properties.port, parseInteger(n, v)))
  const publicUrl = read(env, 'PUBLIC_URL', `http://localhost:${port}`, str).replace(/\/+$/, '')
  const publicOrigin = parseOrigin('PUBLIC_URL', publicUrl)
  const databaseUrl = read(env, 'DATABASE_URL', 'file:data/auth.db', str)
  const database = databaseOf(databaseUrl)
  const databaseSslCa = read<string | undefined>(env, 'DATABASE_SSL_CA', undefined, (n, v) => {
    if (!existsSync(v.trim())) throw new ConfigError(`${n}: no file at ${v.trim()}; give the path of a PEM file with the CA certificate(s) of the PostgreSQL server`)
    return v.trim()
  })
  const databaseSynchronous = read(env, 'DATABASE_SYNCHRONOUS', 'FULL', (_n, v) => v.trim().toUpperCase()) as 'FULL' | 'NORMAL'
  const trustProxy = read(env, 'TRUST_PROXY', false, parseTrustProxy)
  if (trustProxy === true && nodeEnv === 'production') {
    throw new ConfigError('TRUST_PROXY=true is refused in production: it believes the leftmost X-Forwarded-For entry, which the client writes; set the number of proxies in front (e.g. TRUST_PROXY=1) or their addresses/CIDRs')
  }

  const config: Config = {
    env: nodeEnv,
    port,
    host: read(env, 'HOST', '127.0.0.1', str),
    publicUrl,
    publicOrigin,
    databaseUrl,
    databaseKind: database.kind,
    databasePath: database.path,
    databasePoolSize: read(env, 'DATABASE_POOL_SIZE', 10, parseInteger),
    databaseStatementTimeoutMs: read(env, 'DATABASE_STATEMENT_TIMEOUT_MS', 5000, parseInteger),
    databaseSsl: database.ssl,
    ...(databaseSslCa === undefined ? {} : { databaseSslCa }),
    databaseSynchronous,
    databaseBusyTimeoutMs: read(env, 'DATABASE_BUSY_TIMEOUT_MS', 5000, parseInteger),
    // Off the event loop: an automatic checkpoint runs inside a commit and, with a million
    // sessions, copies hundreds of scattered pages and syncs the file there. The thread's cost
    // and gain: docs/decisions/0002-background-checkpoints.md.
    databaseCheckpoint: read(env, 'DATABASE_CHECKPOINT', 'background', (_n, v) => v.trim().toLowerCase()) as 'background' | 'auto',
    redisUrl: read<string | null>(env, 'REDIS_URL', null, parseRedisUrl),
    threadPoolSize: read(env, 'UV_THREADPOOL_SIZE', Math.min(17, Math.max(3, availableParallelism() + 1)), parseInteger),
    threadPoolNice: read(env, 'THREAD_POOL_NICE', 10, parseInteger),
    requestTimeout: read(env, 'REQUEST_TIMEOUT', 30, parseDuration),
    logLevel: read(env, 'LOG_LEVEL', 'info', (_n, v) => v.trim().toLowerCase()) as Config['logLevel'],
    trustProxy,
    jwt: {
      issuer: read(env, 'JWT_ISSUER', publicUrl, str),
      audience: read(env, 'JWT_AUDIENCE', publicUrl, str),
      algorithm: read(env, 'JWT_ALGORITHM', 'ES256', str) as Config['jwt']['algorithm'],
      secret: env.JWT_SECRET === undefined || env.JWT_SECRET === '' ? undefined : env.JWT_SECRET,
      accessTokenTtl: read(env, 'ACCESS_TOKEN_TTL', 900, parseDuration),
      accessTokenJitter: read(env, 'ACCESS_TOKEN_JITTER', 0, (n, v) => {
        const x = Number(v)
        if (!Number.isFinite(x)) throw new ConfigError(`${n}: "${v}" is not a number`)
        return x
      }),
      clockToleranceSeconds: read(env, 'JWT_CLOCK_TOLERANCE', 5, parseDuration)
    },
    keys: {
      encryptionKey: env.KEY_ENCRYPTION_KEY === undefined || env.KEY_ENCRYPTION_KEY === '' ? undefined : env.KEY_ENCRYPTION_KEY,
      rotationInterval: read(env, 'KEY_ROTATION_INTERVAL', parseDuration('', '30d'), parseDuration),
      jwksMaxAge: read(env, 'JWKS_MAX_AGE', parseDuration('', '1h'), parseDuration),
      rsaModulusLength: read(env, 'RSA_MODULUS_LENGTH', 2048, parseInteger),
      checkInterval: read(env, 'KEY_CHECK_INTERVAL', parseDuration('', '5m'), parseDuration)
    },
    refresh: {
      ttl: read(env, 'REFRESH_TOKEN_TTL', parseDuration('', '7d'), parseDuration),
      sessionMaxAge: read(env, 'SESSION_MAX_AGE', parseDuration('', '30d'), parseDuration),
      reuseInterval: read(env, 'REFRESH_REUSE_INTERVAL', 10, parseDuration),
      cookieName: read(env, 'REFRESH_COOKIE_NAME', 'refresh_token', str),
      cookieSameSite: read(env, 'REFRESH_COOKIE_SAMESITE', 'Strict', (_n, v) => {
        const s = v.trim().toLowerCase()
        return (s.charAt(0).toUpperCase() + s.slice(1)) as 'Strict' | 'Lax' | 'None'
      }),
      transportDefault: read(env, 'REFRESH_TRANSPORT_DEFAULT', 'cookie', (_n, v) => v.trim().toLowerCase()) as 'cookie' | 'body'
    },
    corsOrigins: read(env, 'CORS_ORIGINS', [] as string[], (n, v) =>
      v.split(',').map((s) => s.trim()).filter(Boolean).map((o) => {
        if (o === '*' || o === 'null') throw new ConfigError(`${n}: "${o}" is not allowed; list each origin (credentials are never shared with a wildcard)`)
        return parseOrigin(n, o)
      })),
    allowRegistration: read(env, 'ALLOW_REGISTRATION', true, parseBoolean),
    mfaRequiredRoles: read(env, 'MFA_REQUIRED_ROLES', [] as string[], (_n, v) => v.split(',').map((r) => r.trim()).filter(Boolean)),
    emailVerification: {
      required: read(env, 'REQUIRE_EMAIL_VERIFICATION', false, parseBoolean),
      ttl: read(env, 'EMAIL_VERIFICATION_TTL', parseDuration('', '24h'), parseDuration)
    },
    loginIdentifiers: read(env, 'LOGIN_IDENTIFIERS', ['username', 'email'] as Array<'username' | 'email'>, (n, v) => {
      const list = [...new Set(v.split(',').map((s) => s.trim()).filter(Boolean))]
      for (const item of list) {
        if (item !== 'username' && item !== 'email') throw new ConfigError(`${n}: "${item}" is not one of username, email`)
      }
      if (list.length === 0) throw new ConfigError(`${n}: name at least one of username, email`)
      return list as Array<'username' | 'email'>
    }),
    demo: {
      enabled: read(env, 'DEMO_ENABLED', nodeEnv !== 'production', parseBoolean),
      apiOrigin: read(env, 'DEMO_API_URL', '', parseOrigin)
    },
    password: {
      minLength: read(env, 'PASSWORD_MIN_LENGTH', 12, parseInteger),
      maxLength: 256,
      memoryCost: read(env, 'ARGON2_MEMORY_KIB', 19456, parseInteger),
      timeCost: read(env, 'ARGON2_TIME_COST', 2, parseInteger),
      parallelism: read(env, 'ARGON2_PARALLELISM', 1, parseInteger)
    },
    rateLimit: {
      enabled: read(env, 'RATE_LIMIT_ENABLED', true, parseBoolean),
      global: limit(env, 'RATE_LIMIT', 300, '1m'),
      login: limit(env, 'RATE_LIMIT_LOGIN', 20, '1m'),
      register: limit(env, 'RATE_LIMIT_REGISTER', 10, '1m'),
      refresh: limit(env, 'RATE_LIMIT_REFRESH', 60, '1m'),
      emailVerification: limit(env, 'RATE_LIMIT_EMAIL_VERIFICATION', 10, '1h'),
      emailVerificationPerAccount: limit(env, 'RATE_LIMIT_EMAIL_VERIFICATION_PER_ACCOUNT', 3, '1h'),
      emailVerify: limit(env, 'RATE_LIMIT_EMAIL_VERIFY', 30, '1m'),
      loginFailuresPerUser: limit(env, 'RATE_LIMIT_LOGIN_FAILURES_PER_USER', 10, '15m'),
      passwordForgot: limit(env, 'RATE_LIMIT_PASSWORD_FORGOT', 10, '15m'),
      passwordReset: limit(env, 'RATE_LIMIT_PASSWORD_RESET', 10, '15m'),
      passwordResetMailsPerUser: limit(env, 'RATE_LIMIT_PASSWORD_RESET_MAILS_PER_USER', 3, '1h'),
      emailChangePerAccount: limit(env, 'RATE_LIMIT_EMAIL_CHANGE', 3, '1h')
    },
    passwordReset: {
      ttl: read(env, 'PASSWORD_RESET_TTL', parseDuration('', '30m'), parseDuration),
      // Above the work a request for an existing account does (a lookup and one transaction),
      // with room for a loaded server; docs/accounts.md says how to choose it.
      forgotMinDurationMs: read(env, 'PASSWORD_FORGOT_MIN_DURATION', 250, parseMillis)
    },
    emailChange: {
      ttl: read(env, 'EMAIL_CHANGE_TTL', parseDuration('', '24h'), parseDuration),
      undoTtl: read(env, 'EMAIL_CHANGE_UNDO_TTL', parseDuration('', '7d'), parseDuration)
    },
    accountDeletion: {
      recentLogin: read(env, 'ACCOUNT_DELETE_RECENT_LOGIN', parseDuration('', '5m'), parseDuration)
    },
    metrics: {
      enabled: read(env, 'METRICS_ENABLED', true, parseBoolean),
      port: read<number | null>(env, 'METRICS_PORT', null, parseInteger),
      token: env.METRICS_TOKEN === undefined || env.METRICS_TOKEN === '' ? undefined : env.METRICS_TOKEN
    },
    housekeeping: {
      interval: read(env, 'HOUSEKEEPING_INTERVAL', parseDuration('', '1h'), parseDuration),
      batchSize: read(env, 'HOUSEKEEPING_BATCH_SIZE', 1000, parseInteger),
      sessionRetention: read(env, 'SESSION_RETENTION', parseDuration('', '7d'), parseDuration),
      auditRetention: read(env, 'AUDIT_RETENTION', parseDuration('', '90d'), parseDuration)
    },
    mail: {
      transport: read(env, 'MAIL_TRANSPORT', 'none', (_n, v) => v.trim().toLowerCase()) as Config['mail']['transport'],
      smtpUrl: optional(env, 'SMTP_URL'),
      from: optional(env, 'MAIL_FROM'),
      webhookUrl: optional(env, 'NOTIFY_WEBHOOK_URL'),
      // Not trimmed: the secret is used byte for byte, as the receiver has it.
      webhookSecret: env.NOTIFY_WEBHOOK_SECRET === undefined || env.NOTIFY_WEBHOOK_SECRET === '' ? undefined : env.NOTIFY_WEBHOOK_SECRET,
      productName: read(env, 'MAIL_PRODUCT_NAME', 'Auth Service', str),
      linkBase: read(env, 'APP_URL', publicUrl, (n, v) => { parseOrigin(n, v.trim()); return v.trim() }).replace(/\/+$/, ''),
      templatesDir: optional(env, 'MAIL_TEMPLATES_DIR'),
      maxAttempts: read(env, 'MAIL_MAX_ATTEMPTS', 8, parseInteger),
      retryBaseMs: read(env, 'MAIL_RETRY_BASE', 30_000, parseMillis),
      retryMaxMs: read(env, 'MAIL_RETRY_MAX', 3_600_000, parseMillis),
      pollIntervalMs: read(env, 'MAIL_POLL_INTERVAL', 10_000, parseMillis),
      sendTimeoutMs: read(env, 'MAIL_SEND_TIMEOUT', 30_000, parseMillis),
      batchSize: read(env, 'MAIL_BATCH_SIZE', 20, parseInteger)
    }
  }

  if (!Value.Check(ConfigSchema, config)) {
    const error = [...Value.Errors(ConfigSchema, config)][0]
    const path = error?.instancePath ?? ''
    const name = ENV_NAMES[path]
    const schema = path.split('/').slice(1).reduce<TSchema | undefined>((s, key) => (s as { properties?: Record<string, TSchema> } | undefined)?.properties?.[key], ConfigSchema)
    if (name === undefined || schema === undefined) throw new ConfigError(`invalid configuration: ${path} ${error?.message ?? ''}`)
    throw new ConfigError(notAllowed(name, env[name] ?? '', schema))
  }
  checkConsistency(config)
  if (config.env === 'production') checkProductionSafety(config)
  return Object.freeze(config)
}

function checkConsistency (c: Config): void {
  if (c.jwt.algorithm === 'HS256' && (c.jwt.secret === undefined || c.jwt.secret.length === 0)) {
    throw new ConfigError('JWT_ALGORITHM=HS256 needs JWT_SECRET (at least 32 random bytes); asymmetric algorithms need no secret')
  }
  if (c.refresh.ttl > c.refresh.sessionMaxAge) {
    throw new ConfigError('REFRESH_TOKEN_TTL must not exceed SESSION_MAX_AGE')
  }
  if (c.password.minLength > c.password.maxLength) {
    throw new ConfigError(`PASSWORD_MIN_LENGTH must be at most ${c.password.maxLength}`)
  }
  if (c.keys.encryptionKey !== undefined) decodeKeyEncryptionKey(c.keys.encryptionKey)
  if (c.metrics.port !== null && c.metrics.port !== 0 && c.metrics.port === c.port) {
    throw new ConfigError('METRICS_PORT must differ from PORT (leave it unset to serve /metrics on the main port)')
  }
  checkMail(c.mail)
  if (c.emailVerification.required && c.mail.transport === 'none') {
    // Without mail no account could ever be verified, so none could log in.
    throw new ConfigError('REQUIRE_EMAIL_VERIFICATION=true needs MAIL_TRANSPORT (smtp or webhook; log in development): verification links are sent by mail, and without them no account could log in')
  }
  if (c.housekeeping.auditRetention < c.rateLimit.passwordResetMailsPerUser.windowSeconds) {
    // The per-account limit counts the account's reset requests in the audit log.
    throw new ConfigError('AUDIT_RETENTION must be at least RATE_LIMIT_PASSWORD_RESET_MAILS_PER_USER_WINDOW: the per-account limit of reset mails counts audit events')
  }
}

/** Each transport's settings, present and well-formed; a setting of another transport is a mistake said out loud. */
function checkMail (m: Config['mail']): void {
  if (m.transport === 'none') {
    const stray = m.smtpUrl !== undefined ? 'SMTP_URL' : m.webhookUrl !== undefined ? 'NOTIFY_WEBHOOK_URL' : undefined
    if (stray !== undefined) throw new ConfigError(`${stray} is set but MAIL_TRANSPORT is not; set MAIL_TRANSPORT=${stray === 'SMTP_URL' ? 'smtp' : 'webhook'} to send mail`)
  }
  if (m.transport === 'smtp') {
    if (m.smtpUrl === undefined) throw new ConfigError('MAIL_TRANSPORT=smtp needs SMTP_URL (e.g. smtps://user:password@mail.example.com:465)')
    let url: URL | undefined
    try { url = new URL(m.smtpUrl) } catch { url = undefined }
    // The URL may hold a password: it is never echoed.
    if (url === undefined || (url.protocol !== 'smtp:' && url.protocol !== 'smtps:')) throw new ConfigError('SMTP_URL must be an smtp:// or smtps:// URL')
    if (m.from === undefined) throw new ConfigError('MAIL_TRANSPORT=smtp needs MAIL_FROM (e.g. "Example <no-reply@example.com>")')
  }
  if (m.transport === 'webhook') {
    if (m.webhookUrl === undefined) throw new ConfigError('MAIL_TRANSPORT=webhook needs NOTIFY_WEBHOOK_URL')
    parseOrigin('NOTIFY_WEBHOOK_URL', m.webhookUrl)
    if (m.webhookSecret === undefined) throw new ConfigError('MAIL_TRANSPORT=webhook needs NOTIFY_WEBHOOK_SECRET (the key the receiver checks signatures with)')
  }
  if (m.retryMaxMs < m.retryBaseMs) throw new ConfigError('MAIL_RETRY_MAX must be at least MAIL_RETRY_BASE')
  if (m.templatesDir !== undefined && !existsSync(m.templatesDir)) throw new ConfigError(`MAIL_TEMPLATES_DIR: no directory at ${m.templatesDir}`)
}

/** KEY_ENCRYPTION_KEY: 32 bytes, as 64 hex characters or base64/base64url. */
export function decodeKeyEncryptionKey (value: string): Buffer {
  const buf = /^[0-9a-fA-F]{64}$/.test(value) ? Buffer.from(value, 'hex') : Buffer.from(value, 'base64')
  if (buf.length !== 32) throw new ConfigError('KEY_ENCRYPTION_KEY must be 32 bytes, as 64 hex characters or base64')
  return buf
}

/**
 * With NODE_ENV=production the service refuses to start on a setting that would quietly weaken
 * it. Each message says which setting and why, so the operator can fix it in one go.
 */
function checkProductionSafety (c: Config): void {
  const problems: string[] = []
  if (c.jwt.algorithm === 'HS256' && Buffer.byteLength(c.jwt.secret ?? '') < 32) {
    problems.push('JWT_SECRET must be at least 32 bytes with HS256: a short secret can be brute-forced offline from any token')
  }
  if (new URL(c.publicOrigin).protocol === 'http:' && !isLoopback(c.publicOrigin)) {
    problems.push(`PUBLIC_URL (${c.publicUrl}) must be https outside loopback: the refresh cookie is Secure and tokens must not cross the network in clear`)
  }
  for (const origin of c.corsOrigins) {
    if (new URL(origin).protocol === 'http:' && !isLoopback(origin)) {
      problems.push(`CORS_ORIGINS entry ${origin} must be https: a plain-http page can be tampered with on the network`)
    }
  }
  if (c.password.memoryCost < 19456 || c.password.timeCost < 2) {
    problems.push('ARGON2_MEMORY_KIB must be >= 19456 and ARGON2_TIME_COST >= 2 (OWASP baseline for argon2id)')
  }
  if (c.password.minLength < 8) {
    problems.push('PASSWORD_MIN_LENGTH must be at least 8 (NIST SP 800-63B)')
  }
  if (c.refresh.reuseInterval > 60) {
    problems.push('REFRESH_REUSE_INTERVAL must be at most 60s: a longer window lets a stolen spent token be replayed undetected')
  }
  if (c.jwt.accessTokenTtl > 3600) {
    problems.push('ACCESS_TOKEN_TTL must be at most 1h: other services accept an access token until it expires, even after logout')
  }
  if (!c.rateLimit.enabled) {
    problems.push('RATE_LIMIT_ENABLED=false leaves login open to password guessing')
  }
  if (c.metrics.token !== undefined && c.metrics.token.length < 32) {
    problems.push('METRICS_TOKEN must be at least 32 characters: it is the only thing between the network and /metrics')
  }
  if (c.databasePath === ':memory:') {
    problems.push('DATABASE_URL=:memory: loses every account and key on restart')
  }
  if (c.mail.transport === 'log') {
    problems.push('MAIL_TRANSPORT=log writes every message, one-time links included, to the log; use smtp or webhook')
  }
  if (c.mail.transport !== 'none' && new URL(c.mail.linkBase).protocol === 'http:' && !isLoopback(new URL(c.mail.linkBase).origin)) {
    problems.push(`APP_URL (or PUBLIC_URL) ${c.mail.linkBase} must be https outside loopback: mailed links carry one-time tokens`)
  }
  if (c.mail.transport === 'webhook') {
    if (Buffer.byteLength(c.mail.webhookSecret ?? '') < 32) problems.push('NOTIFY_WEBHOOK_SECRET must be at least 32 bytes: a short key lets anyone forge messages to the receiver')
    const origin = parseOrigin('NOTIFY_WEBHOOK_URL', c.mail.webhookUrl ?? '')
    if (new URL(origin).protocol === 'http:' && !isLoopback(origin)) problems.push('NOTIFY_WEBHOOK_URL must be https outside loopback: messages carry one-time links')
  }
  if (problems.length > 0) {
    throw new ConfigError(`refusing to start with NODE_ENV=production: ${problems.join('; ')}`)
  }
}

const OPEN_FAILURES = /^(EACCES|EPERM|EROFS|ENOTDIR|EEXIST|ENOENT|SQLITE_CANTOPEN|SQLITE_READONLY|SQLITE_PERM)/

/** True inside a Docker or Podman container (both leave a marker file at the root). */
export function inContainer (): boolean {
  return existsSync('/.dockerenv') || existsSync('/run/.containerenv')
}

/**
 * The one line for a database file that cannot be opened or written (a directory the service's
 * user may not write, a bind mount owned by another user, a read-only file system), naming the
 * path and the fix; in a container, the `chown` to run on the host. `undefined` for any other error.
 */
export function databaseOpenError (err: unknown, databasePath: string, container = inContainer()): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code !== 'string' || !OPEN_FAILURES.test(code) || databasePath === ':memory:') return undefined
  const file = resolve(databasePath)
  // A file-system error about another path (a missing migrations folder, ...) is not this one.
  const errPath = (err as { path?: unknown }).path
  if (code.startsWith('E') && (typeof errPath !== 'string' || !file.startsWith(resolve(errPath)))) return undefined
  const dir = dirname(file)
  const reason = (err as Error).message.split('\n')[0] ?? ''
  const { uid, gid, username } = userInfo()
  const fix = container
    ? `the directory ${dir} must be writable by the container's user ${username} (uid ${uid}); for a bind mount, run on the host: sudo chown -R ${uid}:${gid} <the host directory mounted at ${dir}>`
    : `make ${dir} a directory that user ${username} (uid ${uid}) can write, or point DATABASE_URL elsewhere`
  return `DATABASE_URL: cannot open the database ${file} (${reason.startsWith(code) ? reason : `${code}: ${reason}`}); ${fix}`
}
