/**
 * The signing-key ring: which key signs now, which keys verify, what the JWKS publishes, and
 * when keys rotate.
 *
 * Life of a key: `next` (published in the JWKS, not yet signing) → `current` (signing) →
 * `retired` (published and accepted until every token it signed has expired) → removed.
 * A next key is created at least one JWKS cache lifetime (JWKS_MAX_AGE) before it starts
 * signing, so a verifier that cached the key set an instant before it appeared still knows it
 * by the time tokens carry its kid. Which key signs is decided by time (the newest key whose
 * `activatesAt` has passed), so every instance switches at the same moment even before any
 * of them has rewritten the states.
 *
 * All changes go through one IMMEDIATE transaction that re-reads the ring, so instances sharing
 * a database never rotate twice. Key generation (slow for RSA) happens before it.
 */
import { createHash, type KeyObject } from 'node:crypto'
import type { NewSigningKey, SigningKeyRow, SigningKeysRepository } from '../../db/repositories/signing-keys.js'
import {
  generateKeyPair, openPrivateKey, publicJwkOf, publicPemOf, sealPrivateKey, secretKid,
  type Algorithm, type AsymmetricAlgorithm, type PublicJwk
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
}

export interface RingKey {
  kid: string
  alg: Algorithm
  state: 'next' | 'current' | 'retired'
  activatesAt: Date
  removeAfter: Date | null
  /** What fast-jwt verifies with: SPKI PEM, or the HS256 secret. */
  verifyKey: string
  /** What fast-jwt signs with: PKCS#8 PEM, or the HS256 secret. */
  signKey: string
  jwk: PublicJwk | null
}

export interface RingEvent {
  type: 'created' | 'activated' | 'retired' | 'removed'
  kid: string
  alg: Algorithm
}

const secondsMs = (s: number): number => s * 1000

type Mode = 'auto' | 'scheduled' | 'immediate'
type Ops = Parameters<Parameters<SigningKeysRepository['update']>[0]>[1]

export function createKeyRing (repo: SigningKeysRepository, options: KeyRingOptions) {
  let keys: RingKey[] = []
  let byKid = new Map<string, RingKey>()
  let jwksBody = '{"keys":[]}'
  let jwksEtag = ''

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

  /** How long after a key stops signing its last token can still be valid (and some slack). */
  const retirementMs = secondsMs(options.accessTokenTtlSeconds + options.clockToleranceSeconds + options.checkIntervalSeconds)
  const leadMs = secondsMs(options.jwksMaxAgeSeconds)

  function toRingKey (row: SigningKeyRow): RingKey {
    const privateKey: KeyObject = openPrivateKey(row.privateKey, row.kid, options.encryptionKey)
    return {
      kid: row.kid,
      alg: row.alg as AsymmetricAlgorithm,
      state: row.state,
      activatesAt: row.activatesAt,
      removeAfter: row.removeAfter,
      verifyKey: publicPemOf(privateKey),
      signKey: privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
      jwk: row.publicJwk as unknown as PublicJwk
    }
  }

  async function reload (): Promise<void> {
    const rows = await repo.list()
    const loaded = rows.map(toRingKey)
    if (hsKey !== null) loaded.push(hsKey)
    const published = loaded.filter((k) => k.jwk !== null).map((k) => k.jwk!)
    keys = loaded
    byKid = new Map(loaded.map((k) => [k.kid, k]))
    jwksBody = JSON.stringify({ keys: published })
    jwksEtag = `"${createHash('sha256').update(jwksBody).digest('base64url').slice(0, 27)}"`
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

  /** Newest key whose activation time has passed (HS256: the configured secret). */
  function signingKeyAt (now: Date): RingKey | undefined {
    if (hsKey !== null) return hsKey
    let best: RingKey | undefined
    for (const k of keys) {
      if (k.state === 'retired' || k.activatesAt > now) continue
      if (best === undefined || k.activatesAt > best.activatesAt) best = k
    }
    return best
  }

  /**
   * Decides, from the rows as they are, what the ring needs at `now`. Pure: the caller runs it
   * inside the transaction. `fresh` is a newly generated key, used only when one is needed;
   * without it the plan says `needsKey` and changes nothing.
   */
  function plan (rows: SigningKeyRow[], now: Date, mode: Mode, fresh: NewSigningKey | null, ops: Ops): { needsKey: boolean, events: RingEvent[] } {
    const events: RingEvent[] = []
    const alg = options.algorithm
    const retire = (r: SigningKeyRow, at: Date): void => {
      ops.retire(r.kid, at, new Date(at.getTime() + retirementMs))
      events.push({ type: 'retired', kid: r.kid, alg: r.alg as Algorithm })
    }
    const live: SigningKeyRow[] = []
    for (const r of rows) {
      if (r.state === 'retired' && r.removeAfter !== null && r.removeAfter <= now) {
        ops.remove(r.kid)
        events.push({ type: 'removed', kid: r.kid, alg: r.alg as Algorithm })
      } else live.push(r)
    }
    if (alg === 'HS256') {
      // The secret signs; asymmetric keys only verify until their tokens have expired.
      for (const r of live) if (r.state !== 'retired') retire(r, now)
      return { needsKey: false, events }
    }
    const signing = live.filter((r) => r.state !== 'retired' && r.activatesAt <= now)
      .sort((a, b) => b.activatesAt.getTime() - a.activatesAt.getTime())
    const active = signing[0]
    const pending = live.filter((r) => r.state !== 'retired' && r.activatesAt > now)

    // The newest activated key is current; every older one retires from the moment it stopped signing.
    if (active !== undefined && active.state !== 'current') {
      ops.promote(active.kid)
      events.push({ type: 'activated', kid: active.kid, alg: active.alg as Algorithm })
    }
    if (active !== undefined) for (const r of signing.slice(1)) retire(r, active.activatesAt)

    let activatesAt: Date
    if (active === undefined || mode === 'immediate') {
      // First start (nothing signs yet), or an operator replacing the key at once.
      activatesAt = now
    } else {
      if (pending.some((p) => p.alg === alg)) return { needsKey: false, events }
      const scheduled = active.activatesAt.getTime() + secondsMs(options.rotationIntervalSeconds)
      const due = mode === 'scheduled' || active.alg !== alg || now.getTime() >= scheduled - leadMs
      if (!due) return { needsKey: false, events }
      const earliest = now.getTime() + leadMs
      activatesAt = new Date(mode === 'scheduled' || active.alg !== alg ? earliest : Math.max(earliest, scheduled))
    }
    if (fresh === null) return { needsKey: true, events }

    const state = activatesAt <= now ? 'current' : 'next'
    ops.insert({ ...fresh, state, activatesAt })
    events.push({ type: 'created', kid: fresh.kid, alg })
    if (state === 'current') {
      events.push({ type: 'activated', kid: fresh.kid, alg })
      if (active !== undefined) retire(active, now)
      for (const p of pending) { ops.remove(p.kid); events.push({ type: 'removed', kid: p.kid, alg: p.alg as Algorithm }) }
    }
    return { needsKey: false, events }
  }

  /**
   * Brings the ring up to date for `now`: creates the first key, schedules the next one,
   * activates it when its time comes, retires the old one and removes keys whose tokens have
   * all expired. Safe to call from every instance at any time.
   */
  async function maintain (now: Date, mode: Mode = 'auto'): Promise<RingEvent[]> {
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

  return {
    reload,
    maintain,
    /** Schedules a rotation now (next key published, signing after the JWKS lead time), or replaces the key at once. */
    rotate: (now: Date, immediate = false) => maintain(now, immediate ? 'immediate' : 'scheduled'),
    signingKey (now: Date): RingKey {
      const k = signingKeyAt(now)
      if (k === undefined) throw new Error('the key ring has no signing key; maintain() was not run')
      return k
    },
    /** The key that may verify a token with this kid, or undefined. */
    verificationKey: (kid: string): RingKey | undefined => byKid.get(kid),
    get keys (): readonly RingKey[] { return keys },
    jwks: () => ({ body: jwksBody, etag: jwksEtag }),
    /** Every algorithm a key in the ring uses. */
    algorithms: (): Algorithm[] => [...new Set(keys.map((k) => k.alg))],
    options
  }
}

export type KeyRing = ReturnType<typeof createKeyRing>
