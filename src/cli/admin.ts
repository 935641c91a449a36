/**
 * The admin CLI: users, sessions, keys, the audit log and backups, on the database named by
 * DATABASE_URL, with the same settings as the server. It opens the SQLite file directly (and
 * applies pending migrations), so it works while the service runs: SQLite serialises the
 * writes, WAL keeps the readers apart.
 *
 *   npm run admin -- <command> [options]
 *   node dist/src/cli/admin.js <command> [options]          (in the container:
 *   docker exec <container> node dist/src/cli/admin.js users)
 *
 * Every change is recorded in the audit log with `"by": "cli"`. Output is a readable table, or
 * JSON with --json. Exit codes: 0 done, 1 refused or not found, 64 usage, 78 configuration.
 */
import '../require-node.js'
import { randomBytes } from 'node:crypto'
import { existsSync, statSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import { COPIED_TABLES, copySqliteToPostgres, CopyRefused, openSqliteSource, SKIPPED_TABLES } from '../../db/copy-to-postgres.js'
import { openBackend, type OpenedBackend } from '../../db/open.js'
import { openPostgres } from '../../db/pg/client.js'
import { AUDIT_EVENT_TYPES, type AuditEvent } from '../../db/repositories/audit.js'
import type { Repositories } from '../../db/repositories/index.js'
import type { SessionRow } from '../../db/repositories/sessions.js'
import type { User } from '../../db/repositories/users.js'
import { deleteAccount } from '../auth/account-deletion.js'
import { checkRoles, createUserAdmin, parseUserSelector, USER_SELECTOR_HELP, type RecordEvent, type UserSelector } from '../admin/users.js'
import { createPasswordPolicy } from '../auth/credentials.js'
import { sendResetMail, type Enqueue } from '../auth/password-reset.js'
import { createPasswordHasher } from '../auth/passwords.js'
import { ConfigError, loadConfig, type Config, type Env } from '../config.js'
import { runHousekeeping } from '../housekeeping.js'
import { loadTemplates, renderMail } from '../mail/templates.js'
import { formatKeyList, rotateKeys, runKeysCommand } from './keys.js'
import { isMain } from './is-main.js'

export const USAGE = `usage: npm run admin -- <command> [options]
       node dist/src/cli/admin.js <command> [options]        (in the container)

users (<user> is id:<id> or name:<username>; a bare id or name is refused):
  users [--limit N] [--offset N]          list users
  user <user>                             one user
  create-user <username> [--roles a,b] [--password-stdin]
                                          create a user (roles default to "user"); without
                                          --password-stdin a random password is generated and
                                          printed once
  disable <user>                          disable a user and end all their sessions
  enable <user>                           enable a user again
  set-roles <user> <role,role,...>        replace a user's roles ("admin" grants /api/admin)
  reset-password <user>                   mail the user a link to reset their password (needs
                                          MAIL_TRANSPORT; a running service delivers it); the
                                          password is neither shown nor set here
  delete-user <user>                      delete a user: sessions and mailed tokens, personal data
                                          in the audit log; keeps a tombstone event; with mail on,
                                          the address gets a notice (docs/accounts.md)
  usernames collisions                    accounts whose names are the same up to case
                                          folding, or look alike (confusable skeleton); from
                                          before these were refused; changes nothing

sessions:
  sessions <user>                         a user's live sessions
  revoke-session <session-id>             end one session
  revoke-sessions <user>                  end every session of a user

keys:
  keys list                               the signing keys
  keys rotate [--immediate]               schedule a new signing key (or switch to one now)
  keys revoke <kid>                       withdraw a leaked key at once (see docs/keys.md)

operations:
  audit [--limit N] [--user <user>] [--type T] [--follow]
                                          the audit log, newest last; --follow keeps printing
                                          new events (Ctrl-C stops)
  backup <file>                           online backup of the database to <file> (a new file),
                                          checked with PRAGMA integrity_check
  prune                                   run housekeeping now (expired tokens, ended sessions,
                                          old audit events, old sent mail)
  database copy --to <postgres-url> [--from <sqlite-file>]
                                          copy the SQLite database (DATABASE_URL, or --from)
                                          into an empty, migrated PostgreSQL database, ids,
                                          sessions and keys as they are, in one transaction
                                          (docs/postgres.md, "Moving from SQLite to PostgreSQL")

mail (docs/mail.md):
  mail dead [--limit N]                   dead-lettered messages (given up after MAIL_MAX_ATTEMPTS)
  mail retry <id>                         put a dead message back in the outbox, due now; a
                                          running service delivers it within MAIL_POLL_INTERVAL

options:
  --json                                  machine-readable output
  --help                                  this text

Settings come from the environment, as for the server (DATABASE_URL, PASSWORD_MIN_LENGTH,
ARGON2_*, AUDIT_RETENTION, JWT_ALGORITHM, KEY_ENCRYPTION_KEY, ...).`

export interface AdminIO {
  env?: Env
  stdout?: (text: string) => void
  stderr?: (text: string) => void
  /** The whole of standard input (for --password-stdin). */
  readStdin?: () => Promise<string>
  now?: () => Date
  /** Stops `audit --follow`. */
  signal?: AbortSignal
  /** How often `audit --follow` looks for new events. */
  followIntervalMs?: number
}

const COMMANDS = new Set(['users', 'user', 'usernames', 'create-user', 'disable', 'enable', 'set-roles', 'reset-password', 'delete-user', 'sessions', 'revoke-session',
  'revoke-sessions', 'keys', 'audit', 'backup', 'prune', 'database', 'mail'])

class UsageError extends Error {}
class Refused extends Error {}

interface Parsed {
  positional: string[]
  flags: Map<string, string | true>
}

const VALUE_FLAGS = new Set(['--limit', '--offset', '--roles', '--user', '--type', '--from', '--to'])
const BOOLEAN_FLAGS = new Set(['--json', '--password-stdin', '--follow', '--immediate', '--help'])

function parse (argv: string[]): Parsed {
  const positional: string[] = []
  const flags = new Map<string, string | true>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    // After `--` every argument is positional (a key id may start with dashes).
    if (arg === '--') { positional.push(...argv.slice(i + 1)); break }
    if (!arg.startsWith('--')) { positional.push(arg); continue }
    const [name, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined]
    if (BOOLEAN_FLAGS.has(name)) { flags.set(name, true); continue }
    if (!VALUE_FLAGS.has(name)) throw new UsageError(`unknown option ${name}`)
    const value = inline ?? argv[++i]
    if (value === undefined) throw new UsageError(`${name} needs a value`)
    flags.set(name, value)
  }
  return { positional, flags }
}

function intFlag (p: Parsed, name: string, fallback: number, max: number): number {
  const raw = p.flags.get(name)
  if (raw === undefined) return fallback
  if (raw === true || !/^\d+$/.test(raw) || Number(raw) > max) throw new UsageError(`${name} must be a whole number up to ${max}`)
  return Number(raw)
}

function strFlag (p: Parsed, name: string): string | undefined {
  const raw = p.flags.get(name)
  return raw === true ? undefined : raw
}

function arg (p: Parsed, index: number, what: string): string {
  const value = p.positional[index]
  if (value === undefined || value === '') throw new UsageError(`missing ${what}`)
  return value
}

/** A fixed-width table; null shows as "-". */
export function table (rows: Array<Record<string, unknown>>, columns: string[]): string {
  if (rows.length === 0) return '(none)'
  const cell = (v: unknown): string => v === null || v === undefined ? '-' : Array.isArray(v) ? v.join(',') : typeof v === 'object' ? JSON.stringify(v) : String(v)
  const cells = rows.map((r) => columns.map((c) => cell(r[c])))
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)))
  return [columns, ...cells].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')
}

const userView = (u: User) => ({ id: u.id, username: u.username, roles: u.roles, disabled: u.disabled, createdAt: u.createdAt.toISOString() })
const sessionView = (s: SessionRow) => ({
  id: s.id,
  userId: s.userId,
  createdAt: s.createdAt.toISOString(),
  lastUsedAt: s.lastUsedAt.toISOString(),
  expiresAt: s.expiresAt.toISOString(),
  ip: s.ip,
  userAgent: s.userAgent
})
const auditView = (e: AuditEvent) => ({ ...e, at: e.at.toISOString() })
const USER_COLUMNS = ['id', 'username', 'roles', 'disabled', 'createdAt']
const SESSION_COLUMNS = ['id', 'createdAt', 'lastUsedAt', 'expiresAt', 'ip', 'userAgent']
const AUDIT_COLUMNS = ['id', 'at', 'type', 'userId', 'sessionId', 'ip', 'detail']
const DEAD_MAIL_COLUMNS = ['id', 'kind', 'recipient', 'attempts', 'lastError', 'createdAt']

async function open (config: Config, mayCreate: boolean): Promise<OpenedBackend> {
  if (config.databaseKind === 'sqlite') {
    if (config.databasePath === ':memory:') throw new Refused('DATABASE_URL is :memory:; the admin CLI needs the database file the service uses')
    if (!mayCreate && !existsSync(config.databasePath)) {
      throw new Refused(`no database at ${config.databasePath}; start the service once (or check DATABASE_URL)`)
    }
  }
  return await openBackend(config)
}

async function readAllStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

/**
 * Runs `admin <argv...>` and returns the exit code. Never throws and never calls process.exit,
 * so that tests (and other tools) can run it in-process.
 */
export async function runAdminCommand (argv: string[], io: AdminIO = {}): Promise<number> {
  const out = io.stdout ?? ((s: string) => { process.stdout.write(s + '\n') })
  const err = io.stderr ?? ((s: string) => { process.stderr.write(s + '\n') })
  const now = io.now ?? (() => new Date())
  const [command, ...rest] = argv
  if (command === undefined || command === 'help' || command === '--help') {
    out(USAGE)
    return command === undefined ? 64 : 0
  }
  let opened: OpenedBackend | undefined
  const auditWrites: Array<Promise<void>> = []
  try {
    if (!COMMANDS.has(command)) throw new UsageError(`unknown command "${command}"`)
    const p = parse(rest)
    if (p.flags.has('--help')) { out(USAGE); return 0 }
    const json = p.flags.has('--json')
    const show = (value: unknown, text: () => string): void => { out(json ? JSON.stringify(value, null, 2) : text()) }
    const env = io.env ?? process.env
    const config = loadConfig(env)

    if (command === 'keys') {
      const sub = arg(p, 0, 'keys command (list or rotate)')
      if (sub !== 'rotate') return await runKeysCommand(rest, { env, stdout: out, stderr: err, now: now() })
      const immediate = p.flags.has('--immediate')
      const result = await rotateKeys(config, { immediate, now: now() })
      const created = result.events.find((e) => e.type === 'created')
      if (created !== undefined) {
        opened = await open(config, false)
        recorder(opened.repos.audit, now, auditWrites)('key_rotated', { detail: { kid: created.kid, alg: created.alg, immediate } })
      }
      show(result, () => `${created === undefined ? 'a next key is already scheduled; nothing to do (use --immediate to switch now)' : `new ${created.alg} key ${created.kid}${immediate ? ' signs from now' : ' stored; running servers publish it within 1 s and it signs after the JWKS lead time'}`}\n\n${formatKeyList(result.keys)}`)
      return 0
    }

    if (command === 'database') {
      const sub = arg(p, 0, 'database command (copy)')
      if (sub !== 'copy') throw new UsageError(`unknown database command "${sub}"`)
      const result = await copyDatabase(p, env, config)
      const rows = [...COPIED_TABLES.map((t) => ({ table: t.name, rows: result.counts[t.name] ?? 0 })),
        ...Object.keys(SKIPPED_TABLES).map((name) => ({ table: name, rows: 'not copied' }))]
      show({ from: result.from, to: result.to, counts: result.counts, skipped: Object.keys(SKIPPED_TABLES) }, () =>
        `copied ${result.from} into ${result.to} in one transaction:\n\n${table(rows, ['table', 'rows'])}\n\n` +
        'next: start the service with DATABASE_URL set to the PostgreSQL URL and the same KEY_ENCRYPTION_KEY and settings')
      return 0
    }

    opened = await open(config, command === 'create-user')
    const { repos } = opened
    const record = recorder(repos.audit, now, auditWrites)
    const passwordPolicy = createPasswordPolicy(config.password.minLength)
    // The hasher is only built when a password is hashed (it hashes a dummy password at start).
    const admin = createUserAdmin({ repos, passwordPolicy, passwords: { hash: async (pw) => await (await createPasswordHasher(config.password)).hash(pw) } })
    const selector = (raw: string): UserSelector => {
      const parsed = parseUserSelector(raw)
      if (parsed === null) throw new UsageError(`"${raw}": name a user as ${USER_SELECTOR_HELP}`)
      return parsed
    }
    const findUser = async (index: number): Promise<User> => {
      const key = arg(p, index, `user (${USER_SELECTOR_HELP})`)
      const user = await admin.find(selector(key))
      if (user === null) throw new Refused(`no user "${key}"`)
      return user
    }

    switch (command) {
      case 'users': {
        const users = await admin.list({ limit: intFlag(p, '--limit', 100, 10_000), offset: intFlag(p, '--offset', 0, 1_000_000_000) })
        show(users.map(userView), () => table(users.map(userView), USER_COLUMNS))
        return 0
      }
      case 'user': {
        const user = await findUser(0)
        show(userView(user), () => table([userView(user)], USER_COLUMNS))
        return 0
      }
      case 'usernames': {
        const sub = arg(p, 0, 'usernames command (collisions)')
        if (sub !== 'collisions') throw new UsageError(`unknown usernames command "${sub}"`)
        const groups = (await admin.collisions()).map((g) => ({ kind: g.kind, value: g.value, users: g.users.map(userView) }))
        show(groups, () => groups.length === 0
          ? 'no collisions'
          : groups.map((g) => `${g.kind === 'fold' ? 'same name up to case' : 'look alike'} (${g.kind} ${g.value}):\n` +
            table(g.users, USER_COLUMNS)).join('\n\n') +
            '\n\nEach still logs in with the name it registered; `disable id:<id>` one that impersonates another.')
        return 0
      }
      case 'create-user': {
        const username = arg(p, 0, 'username')
        const roles = (strFlag(p, '--roles') ?? 'user').split(',')
        const checked = checkRoles(roles)
        if (!checked.ok) throw new UsageError(checked.message)
        let password: string
        let generated = false
        if (p.flags.has('--password-stdin')) {
          password = (await (io.readStdin ?? readAllStdin)()).replace(/\r?\n$/, '')
        } else {
          password = randomBytes(24).toString('base64url')
          generated = true
        }
        const result = await admin.create({ username, password, roles: checked.roles }, now(), record)
        if (!result.ok) throw new Refused(result.message)
        const view = { ...userView(result.user), ...(generated ? { password } : {}) }
        show(view, () => table([userView(result.user)], USER_COLUMNS) +
          (generated ? `\n\ngenerated password (shown once; have the user change it): ${password}` : ''))
        return 0
      }
      case 'disable':
      case 'enable': {
        const user = await findUser(0)
        const result = await admin.setDisabled(user.id, command === 'disable', now(), record)
        if (result === null) throw new Refused(`no user "${p.positional[0]}"`)
        show({ ...userView(result.user), endedSessions: result.endedSessions }, () =>
          `${result.user.username} ${command}d${command === 'disable' ? `; ${result.endedSessions} session(s) ended` : ''}`)
        return 0
      }
      case 'set-roles': {
        const user = await findUser(0)
        const checked = checkRoles(arg(p, 1, 'roles (comma-separated)').split(','))
        if (!checked.ok) throw new UsageError(checked.message)
        const result = await admin.setRoles(user.id, checked.roles, now(), record)
        if (result === null) throw new Refused(`no user "${p.positional[0]}"`)
        show(userView(result.user), () => `${result.user.username}: roles ${result.previous.join(',') || '-'} -> ${result.user.roles.join(',') || '-'}`)
        return 0
      }
      case 'reset-password': {
        const user = await findUser(0)
        if (config.mail.transport === 'none') throw new Refused('MAIL_TRANSPORT is not set: no service would deliver the reset mail (see docs/mail.md)')
        const at = now()
        const templates = loadTemplates(config.mail.templatesDir)
        const context = { product: config.mail.productName, linkBase: config.mail.linkBase }
        const enqueue: Enqueue = (kind, recipient, vars, when) => repos.outbox.enqueue({ ...renderMail(templates, context, kind, recipient, vars), now: when })
        const { outcome } = await sendResetMail({ repos, ttlSeconds: config.passwordReset.ttl, linkBase: config.mail.linkBase, enqueue }, user.id, at, {
          limit: null,
          // In the transaction that issues the token, as the HTTP route records it.
          audit: () => { repos.audit.recordNow({ type: 'password_reset_triggered', at, userId: user.id, userAgent: 'admin-cli', detail: { by: 'cli' } }) }
        })
        if (outcome === 'no_email') throw new Refused(`${user.username} has no e-mail address`)
        if (outcome === 'disabled') throw new Refused(`${user.username} is disabled; enable the user first`)
        if (outcome !== 'issued') throw new Refused(`no user "${p.positional[0]}"`)
        show({ userId: user.id, username: user.username, queued: true }, () =>
          `a password-reset link for ${user.username} is in the outbox; a running service delivers it`)
        return 0
      }
      case 'delete-user': {
        const user = await findUser(0)
        const { mail } = config
        // The notice goes through the outbox like the service's own mail; a running service
        // delivers it within MAIL_POLL_INTERVAL.
        const templates = mail.transport === 'none' ? null : loadTemplates(mail.templatesDir)
        const notify = templates === null
          ? null
          : (to: string, at: Date) => { repos.outbox.enqueue({ ...renderMail(templates, { product: mail.productName, linkBase: mail.linkBase }, 'account_deleted', to, {}), now: at }) }
        if (!await deleteAccount({ repos, notify }, { userId: user.id, epoch: null, by: 'cli', now: now() })) throw new Refused(`no user "${p.positional[0]!}"`)
        show({ deleted: user.id }, () => `deleted ${user.username} (${user.id})${user.email !== null && notify !== null ? '; a notice to the address is queued' : ''}`)
        return 0
      }
      case 'sessions': {
        const user = await findUser(0)
        const sessions = (await admin.listSessions(user.id, now())).map(sessionView)
        show(sessions, () => table(sessions, SESSION_COLUMNS))
        return 0
      }
      case 'revoke-session': {
        const id = arg(p, 0, 'session id')
        const ended = await admin.revokeSession(id, now(), record)
        if (ended === null) throw new Refused(`no live session "${id}"`)
        show({ sessionId: id, userId: ended.userId, ended: true }, () => `session ${id} ended`)
        return 0
      }
      case 'revoke-sessions': {
        const user = await findUser(0)
        const count = await admin.revokeAllSessions(user.id, now(), record)
        show({ userId: user.id, ended: count }, () => `${count} session(s) of ${user.username} ended`)
        return 0
      }
      case 'audit': {
        const type = strFlag(p, '--type')
        if (type !== undefined && !(AUDIT_EVENT_TYPES as readonly string[]).includes(type)) {
          throw new UsageError(`--type must be one of ${AUDIT_EVENT_TYPES.join(', ')}`)
        }
        const userKey = strFlag(p, '--user')
        // id: needs no live user (events outlive the accounts they name); name: must find one.
        const named = userKey === undefined ? undefined : selector(userKey)
        let userId: string | undefined
        if (named?.by === 'id') userId = named.id
        if (named?.by === 'name') {
          userId = (await admin.find(named))?.id
          if (userId === undefined) throw new Refused(`no user "${userKey}"`)
        }
        const limit = intFlag(p, '--limit', 50, 1000)
        // Newest `limit` events, printed oldest first like a log.
        let events = (await repos.audit.list({ userId, type, limit })).reverse()
        const print = (batch: AuditEvent[], header: boolean): void => {
          if (json) { for (const e of batch) out(JSON.stringify(auditView(e))) } else if (batch.length > 0 || header) {
            const text = table(batch.map(auditView), AUDIT_COLUMNS)
            out(header ? text : text.split('\n').slice(1).join('\n'))
          }
        }
        print(events, true)
        if (!p.flags.has('--follow')) return 0
        let last = events.at(-1)?.id ?? (await repos.audit.list({ limit: 1 }))[0]?.id ?? 0
        const signal = io.signal ?? abortOnSigint()
        while (!signal.aborted) {
          await new Promise((resolve) => setTimeout(resolve, io.followIntervalMs ?? 1000))
          events = await repos.audit.list({ userId, type, afterId: last, limit: 1000 })
          print(events, false)
          last = events.at(-1)?.id ?? last
        }
        return 0
      }
      case 'backup': {
        const target = arg(p, 0, 'backup file')
        if (existsSync(target)) throw new Refused(`${target} exists; choose a new file (a backup never overwrites)`)
        if (!existsSync(dirname(target) || '.')) throw new Refused(`directory ${dirname(target)} does not exist`)
        const started = Date.now()
        // The online backup API copies the pages while the service keeps running.
        if (opened.sqlite === null) throw new Refused('backup copies a SQLite database; on PostgreSQL use pg_dump (docs/postgres.md)')
        const progress = await opened.sqlite.sqlite.backup(target)
        // The copy is a WAL database like its source; switched to a rollback journal it is one
        // self-contained file, with no -wal or -shm beside it, ready to be copied away.
        const check = new Database(target)
        let integrity: string
        let users: number
        try {
          check.pragma('journal_mode = DELETE')
          integrity = String(check.pragma('integrity_check', { simple: true }))
          users = Number(check.prepare('SELECT count(*) FROM users').pluck().get())
        } finally {
          check.close()
        }
        if (integrity !== 'ok') throw new Refused(`backup ${target} failed its integrity check: ${integrity}`)
        const summary = { file: target, bytes: statSync(target).size, pages: progress.totalPages, users, integrity, ms: Date.now() - started }
        show(summary, () => `backup written to ${target}: ${summary.bytes} bytes, ${users} user(s), integrity ok, ${summary.ms} ms\n` +
          'restore: stop the service, replace the database file with this one, delete its -wal and -shm files, start the service')
        return 0
      }
      case 'prune': {
        const result = await runHousekeeping({ repos, config }, now())
        show(result, () => `deleted ${result.refreshTokens} expired refresh token(s), ${result.sessions} ended session(s), ${result.auditEvents} old audit event(s), ${result.sentMail} old sent message(s), ${result.accountTokens} expired account token(s) in ${result.ms} ms`)
        return 0
      }
      case 'mail': {
        const sub = arg(p, 0, 'mail command (dead or retry)')
        if (sub === 'dead') {
          const dead = (await repos.outbox.listDead(intFlag(p, '--limit', 100, 10_000))).map((m) => ({ ...m, createdAt: m.createdAt.toISOString() }))
          show(dead, () => table(dead, DEAD_MAIL_COLUMNS))
          return 0
        }
        if (sub !== 'retry') throw new UsageError(`unknown mail command "${sub}"`)
        const raw = arg(p, 1, 'message id (from `mail dead`)')
        if (!/^\d{1,15}$/.test(raw)) throw new UsageError(`"${raw}" is not a message id`)
        if (!await repos.outbox.retry(Number(raw), now())) throw new Refused(`no dead message ${raw}`)
        show({ id: Number(raw), state: 'pending' }, () => `message ${raw} is pending again`)
        return 0
      }
      default:
        throw new UsageError(`unknown command "${command}"`)
    }
  } catch (e) {
    if (e instanceof UsageError) { err(`admin: ${e.message}\n\n${USAGE}`); return 64 }
    if (e instanceof CopyRefused) { err(`admin: --${e.side}: ${e.message}`); return 1 }
    if (e instanceof ConfigError) { err(`admin: ${e.message}`); return 78 }
    err(`admin: ${(e as Error).message}`)
    return 1
  } finally {
    await Promise.all(auditWrites)
    await opened?.close()
  }
}

/** Where a `--from`/`--to` value points, read as DATABASE_URL is, its errors naming the option. */
function databaseOption (option: '--from' | '--to', value: string, env: Env): Config {
  try {
    return loadConfig({ ...env, DATABASE_URL: value })
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.message.replace(/^DATABASE_URL/, option))
    throw e
  }
}

/**
 * `database copy`: the SQLite database of DATABASE_URL (or --from) into the empty PostgreSQL
 * database of --to (db/copy-to-postgres.ts). Reads the source without changing it.
 */
async function copyDatabase (p: Parsed, env: Env, config: Config): Promise<{ from: string, to: string, counts: Record<string, number> }> {
  const to = strFlag(p, '--to')
  if (to === undefined || to === '') throw new UsageError('database copy needs --to postgres://user:password@host:port/database')
  const from = strFlag(p, '--from')
  const source = from === undefined ? config : databaseOption('--from', from, env)
  const fromName = from === undefined ? 'DATABASE_URL' : '--from'
  if (source.databaseKind !== 'sqlite') throw new CopyRefused('from', `${fromName} names PostgreSQL; the source must be the SQLite database (a file path or file:<path>)`)
  if (source.databasePath === ':memory:') throw new CopyRefused('from', `${fromName} is :memory:; name the SQLite file the service uses`)
  const target = databaseOption('--to', to, env)
  if (target.databaseKind !== 'postgres') throw new UsageError('--to must be a postgres:// URL of an empty database migrated by this release')
  const shown = target.databasePath
  const sqlite = openSqliteSource(source.databasePath)
  const { pool } = openPostgres({
    url: target.databaseUrl,
    poolSize: 1,
    statementTimeoutMs: target.databaseStatementTimeoutMs,
    ssl: target.databaseSsl,
    ...(target.databaseSslCa === undefined ? {} : { sslCa: target.databaseSslCa })
  })
  try {
    try {
      const client = await pool.connect()
      client.release()
    } catch (e) {
      const code = (e as { code?: unknown }).code
      throw new CopyRefused('to', `cannot connect to PostgreSQL at ${shown}; check that the server runs, is reachable and that the database exists (${typeof code === 'string' ? `${code}: ` : ''}${(e as Error).message})`)
    }
    const result = await copySqliteToPostgres(sqlite, pool, shown)
    return { from: source.databasePath, to: shown, counts: result.counts }
  } finally {
    sqlite.close()
    await pool.end().catch(() => {})
  }
}

/**
 * The CLI's audit events. Each write is awaited (`pending`) before the database is closed: the
 * CLI exits right after, and the event must not be lost (on PostgreSQL a write is a round trip).
 */
function recorder (audit: Repositories['audit'], now: () => Date, pending: Array<Promise<void>>): RecordEvent {
  return (type, fields) => {
    pending.push(audit.record({ type, at: now(), userId: fields.userId ?? null, sessionId: fields.sessionId ?? null, userAgent: 'admin-cli', detail: { ...fields.detail, by: 'cli' } })
      .catch((e: unknown) => { process.stderr.write(`admin: audit event ${type} not recorded: ${(e as Error).message}\n`) }))
  }
}

function abortOnSigint (): AbortSignal {
  const controller = new AbortController()
  process.once('SIGINT', () => { controller.abort() })
  return controller.signal
}

if (isMain(import.meta.url)) {
  process.exitCode = await runAdminCommand(process.argv.slice(2))
}
