/**
 * The signing-key ring: which key signs now, which keys verify, what the JWKS publishes, and
 * when keys rotate.
 *
 * Life of a key: `next` (published in the JWKS, not yet signing) → `current` (signing) →
 * `retired` (published and accepted until every token it signed has expired) → removed.
 *
 * Lead time. A next key is created at least JWKS_MAX_AGE + KEY_CHECK_INTERVAL before it starts
 * signing. Other instances sharing the database learn of a new key at their next check (at most
 * KEY_CHECK_INTERVAL later) and only then publish it; a verifier that fetched the key set from
 * such an instance an instant before may keep that copy for JWKS_MAX_AGE. Both waits fit in the
 * lead time, so no verifier that honours Cache-Control meets a kid it has never been offered.
 *
 * Which key signs is decided by time (the newest non-retired key whose `activatesAt` has
 * passed, or that is already `current`), so every instance switches at the same moment even
 * before any of them has rewritten the states, and a clock stepped back does not stop signing. A key stops being accepted `retirement` after it stopped signing: the access-token
 * lifetime, plus the clock tolerance, plus one check interval (an instance that has not reloaded
 * yet may still sign with it for that long after an immediate rotation).
 *
 * All changes go through one IMMEDIATE transaction that re-reads the ring, so instances sharing
 * a database (and the key CLI) never rotate twice. Key generation (slow for RSA) happens before
 * it, outside the lock.
 */
import { createHash, type KeyObject } from 'node:crypto'
import type { NewSigningKey, SigningKeyRow, SigningKeysRepository } from '../../db/repositories/signing-keys.js'
import { decodeKeyEncryptionKey, type Config } from '../config.js'
import {
  generateKeyPair, isSealed, KeyProtectionError, openPrivateKey, publicJwkOf, publicJwkOfPrivate, publicPemOf,
  sealPrivateKey, secretKid, type Algorithm, type AsymmetricAlgorithm, type PublicJwk
} from './signing-key.js'

export interface KeyRingOptions {
  algorithm: Algorithm
  /** HS256 only. */
  secret?: string
  encryptionKey?: Buffer
  rotationIntervalSeconds: number
  jwksMaxAgeSeconds: number
  accessTokenTtlSeconds: number
  clockToleranceSeconds: number
  checkIntervalSeconds: number
  rsaModulusLength: number
  /** At most one reload from the database per this many seconds when a token names an unknown kid. */
  unknownKidReloadSeconds?: number
}

/**
 * How often a running instance looks for changes to the stored ring (a key rotated or revoked
 * by the key CLI or another instance): one read of a few short rows, so it can be often.
 */
export const KEY_CHANGE_CHECK_SECONDS = 1

/** What must change for the ring to be reread: which keys exist, their states and times. */
function stampOf (rows: ReadonlyArray<{ kid: string, state: string, activatesAt: Date, removeAfter: Date | null }>): string {
  return rows.map((r) => `${r.kid}:${r.state}:${r.activatesAt.getTime()}:${r.removeAfter?.getTime() ?? ''}`).sort().join(',')
}

/** `keys revoke` named a kid the ring does not hold. */
export class UnknownKeyError extends Error {
  override name = 'UnknownKeyError'
}

/** The ring's settings, from the service configuration (shared by the server and the key CLI). */
export function keyRingOptions (config: Config): KeyRingOptions {
  return {
    algorithm: config.jwt.algorithm,
    secret: config.jwt.secret,
    encryptionKey: config.keys.encryptionKey === undefined ? undefined : decodeKeyEncryptionKey(config.keys.encryptionKey),
    rotationIntervalSeconds: config.keys.rotationInterval,
    jwksMaxAgeSeconds: config.keys.jwksMaxAge,
    accessTokenTtlSeconds: config.jwt.accessTokenTtl,
    clockToleranceSeconds: config.jwt.clockToleranceSeconds,
    checkIntervalSeconds: config.keys.checkInterval,
    rsaModulusLength: config.keys.rsaModulusLength
  }
}

export interface RingKey {
  kid: string
  alg: Algorithm
  state: 'next' | 'current' | 'retired'
  activatesAt: Date
  removeAfter: Date | null
  /** SPKI PEM, or the HS256 secret: what @fastify/jwt verifies this key's tokens with. */
  verifyKey: string
  /** PKCS#8 PEM, or the HS256 secret: what @fastify/jwt signs with. */
  signKey: string
  jwk: PublicJwk | null
}

export interface RingEvent {
  type: 'created' | 'activated' | 'retired' | 'removed' | 'sealed' | 'revoked'
  kid: string
  alg: Algorithm
  /** For `created`: when the key starts signing. */
  activatesAt?: Date
}

export type MaintainMode = 'auto' | 'scheduled' | 'immediate'
type Ops = Parameters<Parameters<SigningKeysRepository['update']>[0]>[1]

const secondsMs = (s: number): number => s * 1000

/** The opened form of a stored key: derived once per stored value and kept while the row lives. */
interface Material {
  verifyKey: string
  signKey: string
  jwk: PublicJwk
}

/**
 * Whether a key signs at `now` (the newest such key does): a key that is not retired and either
 * has reached its activation time or has already been made `current` (it has signed). The
 * second half makes the ring tolerate a wall clock stepped back: the key that signed a moment
 * ago keeps signing, and is never mistaken for a pending key, even when its activation time
 * now appears to be in the future. A `next` key never signs before its time by this clock.
 */
export function signsAt (key: { state: string, activatesAt: Date }, now: Date): boolean {
  return key.state !== 'retired' && (key.state === 'current' || key.activatesAt <= now)
}

export function createKeyRing (repo: SigningKeysRepository, options: KeyRingOptions) {
  let keys: RingKey[] = []
  let byKid = new Map<string, RingKey>()
  let jwksBody = '{"keys":[]}'
  let jwksEtag = etagOf(jwksBody)
  let material = new Map<string, Material>()
  let lastUnknownKidReload = Number.NEGATIVE_INFINITY
  /** The stamp of the rows the ring was last read from (see `refresh`). */
  let loadedStamp = ''
  let running: Promise<unknown> = Promise.resolve()

  // HS256: one secret both signs and verifies.
  const hsKey: RingKey | null = options.algorithm === 'HS256'
    ? {
        kid: secretKid(options.secret!),
        alg: 'HS256',
        state: 'current',
        activatesAt: new Date(0),
        removeAfter: null,
        verifyKey: options.secret!,
        signKey: options.secret!,
        jwk: null
      }
    : null

  const retirementMs = secondsMs(options.accessTokenTtlSeconds + options.clockToleranceSeconds + options.checkIntervalSeconds)
  const leadMs = secondsMs(options.jwksMaxAgeSeconds + options.checkIntervalSeconds)
  const unknownKidReloadMs = secondsMs(options.unknownKidReloadSeconds ?? 10)

  function etagOf (body: string): string {
    return `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`
  }

  async function open (row: SigningKeyRow, cache: Map<string, Material>): Promise<Material> {
    const cacheKey = `${row.kid}\n${row.privateKey}`
    const known = material.get(cacheKey)
    if (known !== undefined) {
      cache.set(cacheKey, known)
      return known
    }
    const alg = row.alg as AsymmetricAlgorithm
    const privateKey: KeyObject = openPrivateKey(row.privateKey, row.kid, options.encryptionKey)
    let jwk: PublicJwk
    try {
      jwk = await publicJwkOfPrivate(privateKey, alg)
    } catch (err) {
      throw new KeyProtectionError(`signing key ${row.kid}: ${(err as Error).message}`)
    }
    // The kid is the thumbprint of the key itself; a row whose kid does not match was altered.
    if (jwk.kid !== row.kid) throw new KeyProtectionError(`signing key ${row.kid}: the stored kid is not the thumbprint of its key`)
    const opened = {
      verifyKey: publicPemOf(privateKey),
      signKey: privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
      jwk
    }
    cache.set(cacheKey, opened)
    return opened
  }

  /** Reads the ring from the database. Throws KeyProtectionError when a stored key cannot be opened. */
  async function reload (): Promise<void> {
    const rows = await repo.list()
    const stamp = stampOf(rows)
    const next = new Map<string, Material>()
    const loaded: RingKey[] = []
    for (const row of rows) {
      const m = await open(row, next)
      loaded.push({
        kid: row.kid,
        alg: row.alg as AsymmetricAlgorithm,
        state: row.state,
        activatesAt: row.activatesAt,
        removeAfter: row.removeAfter,
        verifyKey: m.verifyKey,
        signKey: m.signKey,
        jwk: m.jwk
      })
    }
    if (hsKey !== null) loaded.push(hsKey)
    const body = JSON.stringify({ keys: loaded.filter((k) => k.jwk !== null).map((k) => k.jwk) })
    keys = loaded
    byKid = new Map(loaded.map((k) => [k.kid, k]))
    material = next
    loadedStamp = stamp
    if (body !== jwksBody) {
      jwksBody = body
      jwksEtag = etagOf(body)
    }
  }

  async function newRow (alg: AsymmetricAlgorithm, now: Date): Promise<NewSigningKey> {
    const { privateKey, publicKey } = await generateKeyPair(alg, options.rsaModulusLength)
    const jwk = await publicJwkOf(publicKey, alg)
    return {
      kid: jwk.kid,
      alg,
      state: 'next',
      publicJwk: jwk as unknown as Record<string, unknown>,
      privateKey: sealPrivateKey(privateKey, jwk.kid, options.encryptionKey),
      createdAt: now,
      activatesAt: now
    }
  }

  /** The key that signs at `now` (see `signsAt`; HS256: the configured secret). */
  function signingKeyAt (now: Date): RingKey | undefined {
    if (hsKey !== null) return hsKey
    let best: RingKey | undefined
    for (const k of keys) {
      if (!signsAt(k, now)) continue
      if (best === undefined || k.activatesAt > best.activatesAt) best = k
    }
    return best
  }

  /**
   * Decides, from the rows as they are, what the ring needs at `now`, and writes it through
   * `ops`. Synchronous: the caller runs it inside the transaction. `fresh` is a newly generated
   * key, used only when one is needed; without it the plan says `needsKey` and adds nothing.
   */
  function plan (rows: SigningKeyRow[], now: Date, mode: MaintainMode, fresh: NewSigningKey | null, ops: Ops): { needsKey: boolean, events: RingEvent[] } {
    const events: RingEvent[] = []
    const alg = options.algorithm
    const retire = (r: SigningKeyRow, at: Date): void => {
      ops.retire(r.kid, at, new Date(at.getTime() + retirementMs))
      events.push({ type: 'retired', kid: r.kid, alg: r.alg as Algorithm })
    }
    const remove = (r: SigningKeyRow): void => {
      ops.remove(r.kid)
      events.push({ type: 'removed', kid: r.kid, alg: r.alg as Algorithm })
    }

    const live: SigningKeyRow[] = []
    for (const r of rows) {
      if (r.state === 'retired' && r.removeAfter !== null && r.removeAfter <= now) remove(r)
      else live.push(r)
    }
    // Keys written before KEY_ENCRYPTION_KEY was set are sealed now, in place.
    if (options.encryptionKey !== undefined) {
      for (const r of live) {
        if (isSealed(r.privateKey)) continue
        ops.reseal(r.kid, sealPrivateKey(openPrivateKey(r.privateKey, r.kid), r.kid, options.encryptionKey))
        events.push({ type: 'sealed', kid: r.kid, alg: r.alg as Algorithm })
      }
    }
    if (alg === 'HS256') {
      // The secret signs; asymmetric keys only verify until their tokens have expired.
      for (const r of live) {
        if (r.state === 'retired') continue
        if (!signsAt(r, now)) remove(r)
        else retire(r, now)
      }
      return { needsKey: false, events }
    }

    const signing = live.filter((r) => signsAt(r, now))
      .sort((a, b) => b.activatesAt.getTime() - a.activatesAt.getTime())
    const active = signing[0]
    // Only keys that never signed are pending: a `current` key whose activation time looks to
    // be in the future (the clock was stepped back) is the active one, never removed.
    let pending = live.filter((r) => !signsAt(r, now))

    // The newest activated key is current; every older one retires from the moment it stopped signing.
    if (active !== undefined && active.state !== 'current') {
      ops.promote(active.kid)
      events.push({ type: 'activated', kid: active.kid, alg: active.alg as Algorithm })
    }
    if (active !== undefined) for (const r of signing.slice(1)) retire(r, active.activatesAt)

    // A key scheduled under another JWT_ALGORITHM never signed anything: it must not start now.
    for (const p of pending) if (p.alg !== alg) remove(p)
    pending = pending.filter((p) => p.alg === alg)

    let activatesAt: Date
    if (active === undefined || mode === 'immediate') {
      // First start (nothing signs yet, so there is nothing to pre-publish for), or an
      // operator replacing the key at once.
      activatesAt = now
    } else {
      if (pending.length > 0) return { needsKey: false, events }
      const scheduled = active.activatesAt.getTime() + secondsMs(options.rotationIntervalSeconds)
      const unscheduled = mode === 'scheduled' || active.alg !== alg
      if (!unscheduled && now.getTime() < scheduled - leadMs) return { needsKey: false, events }
      const earliest = now.getTime() + leadMs
      activatesAt = new Date(unscheduled ? earliest : Math.max(earliest, scheduled))
    }
    if (fresh === null) return { needsKey: true, events }

    const state = activatesAt <= now ? 'current' : 'next'
    ops.insert({ ...fresh, state, activatesAt })
    events.push({ type: 'created', kid: fresh.kid, alg, activatesAt })
    if (state === 'current') {
      events.push({ type: 'activated', kid: fresh.kid, alg })
      if (active !== undefined) retire(active, now)
      for (const p of pending) remove(p)
    }
    return { needsKey: false, events }
  }

  async function maintainNow (now: Date, mode: MaintainMode): Promise<RingEvent[]> {
    // Opening every stored key first refuses a wrong or missing KEY_ENCRYPTION_KEY before
    // anything is written (a key sealed under no key, or the wrong one, would be worse).
    await reload()
    let result = await repo.update((rows, ops) => plan(rows, now, mode, null, ops))
    if (result.needsKey) {
      // Generated outside the transaction, then the plan is made again on the rows as they are
      // by then: if another instance got there first, the key is simply not used.
      const fresh = await newRow(options.algorithm as AsymmetricAlgorithm, now)
      const second = await repo.update((rows, ops) => plan(rows, now, mode, fresh, ops))
      result = { needsKey: false, events: [...result.events, ...second.events] }
    }
    await reload()
    return result.events
  }

  /**
   * Revokes a key: its row is deleted in one IMMEDIATE transaction, so it leaves the JWKS and
   * verification (its tokens name a kid no instance knows any more) and signs nothing more.
   * When it was the key signing now, or no other key could sign, a new key is made to sign at
   * once in the same transaction (as `rotate --immediate`), so the ring is never left without
   * a signing key. Other instances drop it at their next change check (`refresh`).
   */
  async function revokeNow (kid: string, now: Date): Promise<RingEvent[]> {
    await reload()
    const fresh = options.algorithm === 'HS256' ? null : await newRow(options.algorithm, now)
    const result = await repo.update((rows, ops) => {
      const target = rows.find((r) => r.kid === kid)
      if (target === undefined) return null
      ops.remove(kid)
      const events: RingEvent[] = [{ type: 'revoked', kid, alg: target.alg as Algorithm }]
      const rest = rows.filter((r) => r !== target)
      const signingNow = rows.filter((r) => signsAt(r, now)).sort((a, b) => b.activatesAt.getTime() - a.activatesAt.getTime())[0]
      const mode: MaintainMode = signingNow === target || !rest.some((r) => signsAt(r, now)) ? 'immediate' : 'auto'
      return [...events, ...plan(rest, now, mode, fresh, ops).events]
    })
    if (result === null) throw new UnknownKeyError(`no signing key ${kid} in the ring (see \`keys list\`)`)
    await reload()
    return result
  }

  /**
   * Rereads the ring when the stored rows changed since it was last read (one small query;
   * run every KEY_CHANGE_CHECK_SECONDS). Answers whether it reloaded.
   */
  async function refreshNow (): Promise<boolean> {
    if (stampOf(await repo.stamps()) === loadedStamp) return false
    await reload()
    return true
  }

  /** Runs `work` after every change or reload already queued on this ring. */
  function serial<T> (work: () => Promise<T>): Promise<T> {
    const run = running.then(work)
    running = run.catch(() => undefined)
    return run
  }

  /**
   * Brings the ring up to date for `now`: creates the first key, schedules the next one,
   * activates it when its time comes, retires the old one and removes keys whose tokens have
   * all expired. Safe to call from every instance at any time; calls on one ring run one
   * after the other.
   */
  function maintain (now: Date, mode: MaintainMode = 'auto'): Promise<RingEvent[]> {
    return serial(async () => await maintainNow(now, mode))
  }

  return {
    reload,
    maintain,
    /** Revokes the key `kid` at once (see `revokeNow`); throws UnknownKeyError for a kid not stored. */
    revoke: (kid: string, now: Date) => serial(async () => await revokeNow(kid, now)),
    /** Picks up what the key CLI or another instance changed, if anything (see `refreshNow`). */
    refresh: () => serial(refreshNow),
    /** Schedules a rotation now (next key published, signing after the lead time), or replaces the key at once. */
    rotate: (now: Date, immediate = false) => maintain(now, immediate ? 'immediate' : 'scheduled'),
    /** The key that signs at `now`, or undefined when the ring has none (nothing stored, or all revoked). */
    findSigningKey: (now: Date): RingKey | undefined => signingKeyAt(now),
    signingKey (now: Date): RingKey {
      const k = signingKeyAt(now)
      if (k === undefined) throw new Error('the key ring has no signing key; maintain() was not run')
      return k
    },
    /** The key that may verify a token with this kid, or undefined. */
    verificationKey: (kid: string): RingKey | undefined => byKid.get(kid),
    /**
     * Like `verificationKey`, but an unknown kid rereads the ring from the database first (at
     * most once per `unknownKidReloadSeconds`): another instance, or the key CLI, may have
     * replaced the key at once, and its tokens must not be refused here until the next check.
     */
    async findVerificationKey (kid: string): Promise<RingKey | undefined> {
      const known = byKid.get(kid)
      if (known !== undefined) return known
      const now = Date.now()
      if (now - lastUnknownKidReload < unknownKidReloadMs) return undefined
      lastUnknownKidReload = now
      await reload()
      return byKid.get(kid)
    },
    get keys (): readonly RingKey[] { return keys },
    jwks: () => ({ body: jwksBody, etag: jwksEtag }),
    /** Every algorithm a key in the ring uses. */
    algorithms: (): Algorithm[] => [...new Set(keys.map((k) => k.alg))],
    /** How long before it signs a new key is published. */
    leadSeconds: options.jwksMaxAgeSeconds + options.checkIntervalSeconds,
    /** How long after it stopped signing a key is still published and accepted. */
    retirementSeconds: retirementMs / 1000,
    options
  }
}

export type KeyRing = ReturnType<typeof createKeyRing>
