/**
 * The key CLI: lists the signing-key ring and rotates it on demand, on the database named by
 * DATABASE_URL, with the same settings as the server (JWT_ALGORITHM, KEY_ENCRYPTION_KEY, ...).
 *
 *   npm run keys -- list [--json]
 *   npm run keys -- rotate [--immediate] [--json]
 *   npm run keys -- revoke <kid> [--json]
 *   node dist/src/cli/keys.js list            (in the container)
 *
 * `rotate` schedules a new key: stored now, published by the running servers within a second,
 * signing after the lead time (JWKS_MAX_AGE + KEY_CHECK_INTERVAL), so no verifier ever meets an
 * unknown kid. `rotate --immediate` makes the new key sign now: tokens of the old key stay
 * valid until they expire, but verifiers holding a cached key set refetch it when they meet the
 * new kid. `revoke <kid>` deletes a key (one that leaked): it leaves the JWKS and verification,
 * the tokens it signed are refused, and when it was the signing key a new one signs at once.
 * Running servers pick up every change within KEY_CHANGE_CHECK_SECONDS (1 s): they reread the
 * ring when the signing_keys table changed. Several servers and this CLI may act at once:
 * changes are serialised by the database, and a rotation never happens twice.
 *
 * Every function is exported so that an admin CLI can offer `admin keys ...` by delegating here.
 */
import '../require-node.js'
import { existsSync } from 'node:fs'
import { openBackend } from '../../db/open.js'
import type { Repositories } from '../../db/repositories/index.js'
import type { SigningKeyRow } from '../../db/repositories/signing-keys.js'
import { ConfigError, loadConfig, type Config, type Env } from '../config.js'
import { createKeyRing, KEY_CHANGE_CHECK_SECONDS, keyRingOptions, signsAt, UnknownKeyError, type RingEvent } from '../keys/key-ring.js'
import { isSealed, KeyProtectionError } from '../keys/signing-key.js'
import { isMain } from './is-main.js'

export interface KeyListing {
  kid: string
  alg: string
  /** As stored: next, current or retired. */
  state: 'next' | 'current' | 'retired'
  /** True for the key that signs new tokens at `now` (by time, even before its state is rewritten). */
  signing: boolean
  /** Whether the private key is sealed with KEY_ENCRYPTION_KEY. */
  sealed: boolean
  createdAt: string
  activatesAt: string
  retiredAt: string | null
  removeAfter: string | null
}

export interface RotateResult {
  /** What changed; empty when a next key was already scheduled (rotate without --immediate). */
  events: RingEvent[]
  keys: KeyListing[]
}

export class KeysCommandError extends Error {
  override name = 'KeysCommandError'
}

/** Opens the configured database for the duration of `work`. It must exist: the server creates it. */
async function withRepository<T> (config: Config, work: (repo: Repositories['signingKeys'], repos: Repositories) => Promise<T>): Promise<T> {
  if (config.databaseKind === 'sqlite') {
    if (config.databasePath === ':memory:') throw new KeysCommandError('DATABASE_URL is :memory:; the key CLI needs the database file the service uses')
    if (!existsSync(config.databasePath)) throw new KeysCommandError(`no database at ${config.databasePath}; start the service once (or check DATABASE_URL)`)
  }
  const opened = await openBackend(config)
  try {
    return await work(opened.repos.signingKeys, opened.repos)
  } finally {
    await opened.close()
  }
}

function listing (rows: SigningKeyRow[], now: Date): KeyListing[] {
  let signing: SigningKeyRow | undefined
  for (const r of rows) {
    if (!signsAt(r, now)) continue
    if (signing === undefined || r.activatesAt > signing.activatesAt) signing = r
  }
  const iso = (d: Date | null): string | null => d === null ? null : d.toISOString()
  return rows.map((r) => ({
    kid: r.kid,
    alg: r.alg,
    state: r.state,
    signing: r === signing,
    sealed: isSealed(r.privateKey),
    createdAt: r.createdAt.toISOString(),
    activatesAt: r.activatesAt.toISOString(),
    retiredAt: iso(r.retiredAt),
    removeAfter: iso(r.removeAfter)
  }))
}

/** The ring as stored, oldest first. Needs no KEY_ENCRYPTION_KEY: no private key is opened. */
export async function listKeys (config: Config, now = new Date()): Promise<KeyListing[]> {
  return await withRepository(config, async (repo) => listing(await repo.list(), now))
}

/**
 * Schedules a rotation (or, with `immediate`, replaces the signing key now), exactly as the
 * server's own check would. Refuses HS256 (the secret is the key) and a KEY_ENCRYPTION_KEY that
 * does not open the stored keys, before writing anything.
 */
export async function rotateKeys (config: Config, options: { immediate?: boolean, now?: Date } = {}): Promise<RotateResult> {
  if (config.jwt.algorithm === 'HS256') {
    throw new KeysCommandError('JWT_ALGORITHM is HS256: the signing key is JWT_SECRET; rotate it by changing the secret (every access token ends, refresh tokens are not affected)')
  }
  const now = options.now ?? new Date()
  return await withRepository(config, async (repo) => {
    const ring = createKeyRing(repo, keyRingOptions(config))
    const events = await ring.rotate(now, options.immediate === true)
    return { events, keys: listing(await repo.list(), now) }
  })
}

const USAGE = `usage: npm run keys -- <command> [options]

commands:
  list                 the signing keys: kid, algorithm, state, when each signs and is removed
  rotate               a new key, published within a second; it signs after JWKS_MAX_AGE + KEY_CHECK_INTERVAL
  rotate --immediate   a new key signs now (the old one is retired; its tokens stay valid)
  revoke <kid>         a leaked key: removed from the JWKS, its tokens refused, never signs again
                       (when it was the signing key, a new key signs at once; a kid that
                       starts with -- goes after --: revoke -- --abc)

options:
  --json               machine-readable output
  --help               this text

The database and settings come from the environment, as for the server (DATABASE_URL,
JWT_ALGORITHM, KEY_ENCRYPTION_KEY, JWKS_MAX_AGE, KEY_CHECK_INTERVAL, ...).`

/** A fixed-width table of the ring, one key per line. */
export function formatKeyList (keys: KeyListing[]): string {
  if (keys.length === 0) return 'no signing keys yet (the service creates the first one when it starts)'
  const header = ['kid', 'alg', 'state', 'signs from', 'removed after', 'at rest']
  const rows = keys.map((k) => [
    k.kid,
    k.alg,
    k.signing ? `${k.state} (signing)` : k.state,
    k.activatesAt,
    k.removeAfter ?? '-',
    k.sealed ? 'sealed' : 'plain PEM'
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  return [header, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')
}

function describeRotation (result: RotateResult, immediate: boolean): string {
  const created = result.events.find((e) => e.type === 'created')
  const lines: string[] = []
  if (created === undefined) {
    const pending = result.keys.find((k) => k.state === 'next' && !k.signing)
    lines.push(pending === undefined
      ? 'nothing to do'
      : `a next key is already scheduled: ${pending.kid} (${pending.alg}) signs from ${pending.activatesAt}; use --immediate to replace the signing key now`)
  } else if (immediate) {
    lines.push(`new ${created.alg} key ${created.kid} signs from now`)
    for (const e of result.events) {
      if (e.type === 'retired') {
        const k = result.keys.find((x) => x.kid === e.kid)
        lines.push(`retired ${e.kid}: still published and accepted until ${k?.removeAfter ?? 'its tokens expire'}`)
      }
      if (e.type === 'removed') lines.push(`removed ${e.kid} (never signed)`)
    }
    lines.push(`running servers switch to it within ${KEY_CHANGE_CHECK_SECONDS} s (they reread the ring when it changes)`)
  } else {
    lines.push(`new ${created.alg} key ${created.kid} is stored; running servers publish it within ${KEY_CHANGE_CHECK_SECONDS} s, and it signs from ${created.activatesAt!.toISOString()}`)
    lines.push('verifiers that honour the JWKS Cache-Control have it before its first token')
  }
  return lines.join('\n')
}

function describeRevocation (result: RotateResult, kid: string, config: Config): string {
  const lines = [`revoked ${kid}: deleted from the ring; running servers drop it within ${KEY_CHANGE_CHECK_SECONDS} s: it leaves the JWKS, the tokens it signed are refused (401), and it signs nothing more`]
  const created = result.events.find((e) => e.type === 'created')
  if (created !== undefined) lines.push(`new ${created.alg} key ${created.kid} signs from now (${kid} was the signing key)`)
  for (const e of result.events) if (e.type === 'removed') lines.push(`removed ${e.kid} (scheduled, never signed)`)
  lines.push(`other services' verifiers that cached the key set keep ${kid} until their copy expires (at most JWKS_MAX_AGE, ${config.keys.jwksMaxAge} s, for those that honour Cache-Control); restart them to drop it at once`)
  return lines.join('\n')
}

/**
 * Revokes the key `kid` (see the ring's `revoke`): refuses an unknown kid and a
 * KEY_ENCRYPTION_KEY that does not open the stored keys, before writing anything.
 */
export async function revokeKey (config: Config, kid: string, options: { now?: Date } = {}): Promise<RotateResult> {
  const now = options.now ?? new Date()
  return await withRepository(config, async (repo, repos) => {
    const ring = createKeyRing(repo, keyRingOptions(config))
    try {
      const events = await ring.revoke(kid, now)
      // A security event: in the audit log with every change the revocation made.
      const { audit } = repos
      for (const e of events) {
        if (e.type === 'removed') continue
        await audit.record({ type: 'key_rotated', at: now, userAgent: 'keys-cli', detail: { event: e.type, kid: e.kid, alg: e.alg, by: 'cli' } })
      }
      return { events, keys: listing(await repo.list(), now) }
    } catch (e) {
      if (e instanceof UnknownKeyError) throw new KeysCommandError(e.message)
      throw e
    }
  })
}

export interface KeysCommandIO {
  env?: Env
  stdout?: (text: string) => void
  stderr?: (text: string) => void
  now?: Date
}

/**
 * Runs `keys <argv...>` and returns the exit code: 0 done, 1 refused, 64 usage, 78 configuration.
 * Never throws and never calls process.exit, so it can be embedded.
 */
export async function runKeysCommand (argv: string[], io: KeysCommandIO = {}): Promise<number> {
  const out = io.stdout ?? ((s: string) => { process.stdout.write(s + '\n') })
  const err = io.stderr ?? ((s: string) => { process.stderr.write(s + '\n') })
  const [command, ...args] = argv
  // Options are long (`--json`); anything else is an operand. A kid is base64url, so it may
  // start with a dash, or with two: after `--` every argument is an operand.
  const end = args.indexOf('--')
  const before = end === -1 ? args : args.slice(0, end)
  const operands = [...before.filter((a) => !a.startsWith('--')), ...(end === -1 ? [] : args.slice(end + 1))]
  const rest = before.filter((a) => a.startsWith('--'))
  const flags = new Set(rest)
  const known = command === 'list' || command === 'revoke' ? ['--json'] : command === 'rotate' ? ['--json', '--immediate'] : []
  if (command === undefined || command === '--help' || command === 'help' || flags.has('--help')) {
    out(USAGE)
    return command === undefined ? 64 : 0
  }
  if (command !== 'list' && command !== 'rotate' && command !== 'revoke') {
    err(`keys: unknown command "${command}"\n\n${USAGE}`)
    return 64
  }
  const unknown = rest.filter((f) => !known.includes(f))
  if (unknown.length > 0) {
    err(`keys ${command}: unknown option ${unknown.join(' ')}\n\n${USAGE}`)
    return 64
  }
  if (operands.length !== (command === 'revoke' ? 1 : 0)) {
    err(command === 'revoke' ? `keys revoke: name one key id (see \`keys list\`)\n\n${USAGE}` : `keys ${command}: unexpected ${operands.join(' ')}\n\n${USAGE}`)
    return 64
  }
  try {
    const config = loadConfig(io.env ?? process.env)
    const json = flags.has('--json')
    if (command === 'list') {
      const keys = await listKeys(config, io.now)
      out(json ? JSON.stringify(keys, null, 2) : formatKeyList(keys))
    } else if (command === 'revoke') {
      const kid = operands[0]!
      const result = await revokeKey(config, kid, { now: io.now })
      out(json ? JSON.stringify(result, null, 2) : `${describeRevocation(result, kid, config)}\n\n${formatKeyList(result.keys)}`)
    } else {
      const immediate = flags.has('--immediate')
      const result = await rotateKeys(config, { immediate, now: io.now })
      out(json ? JSON.stringify(result, null, 2) : `${describeRotation(result, immediate)}\n\n${formatKeyList(result.keys)}`)
    }
    return 0
  } catch (e) {
    if (e instanceof ConfigError) { err(`keys: ${e.message}`); return 78 }
    if (e instanceof KeysCommandError || e instanceof KeyProtectionError) { err(`keys: ${e.message}`); return 1 }
    err(`keys: ${(e as Error).message}`)
    return 1
  }
}

if (isMain(import.meta.url)) {
  process.exitCode = await runKeysCommand(process.argv.slice(2))
}
