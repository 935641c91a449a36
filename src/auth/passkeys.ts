/**
 * Passkeys (WebAuthn) through @simplewebauthn/server: registration, sign-in with a passkey
 * alone (discoverable credentials: no username), and the assertion check the second-factor
 * and step-up flows use for a known user. Plain functions over the passkeys repository; they
 * return results, never HTTP.
 *
 * Relying party: the id is PUBLIC_URL's hostname, the accepted origins PUBLIC_URL's origin and
 * CORS_ORIGINS (a page on any of them may run the ceremonies).
 *
 * Challenges: 32 random bytes, handed out in the options and stored only as their SHA-256,
 * bound to a purpose (and, for registration and the second factor, to the user), expiring
 * after CHALLENGE_TTL_MS. The response's clientDataJSON names its challenge; that one is
 * consumed (one conditional DELETE) before anything else is checked, so a challenge answers
 * one response at most, whatever that response's fate.
 *
 * Counters: a verified assertion whose signature counter does not exceed the stored one (when
 * either is non-zero) comes from a second copy of the authenticator's key: refused, and the
 * caller audits it. The counter is advanced by a conditional update on the value read, so two
 * assertions racing with one counter value cannot both pass.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import type {
  AuthenticationResponseJSON, PublicKeyCredentialCreationOptionsJSON, PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON
} from '@simplewebauthn/server'
import type { ChallengePurpose, Passkey, PasskeysRepository } from '../../db/repositories/passkeys.js'

/** The WebAuthn library, loaded at the first passkey operation rather than at every start. */
let loaded: Promise<typeof import('@simplewebauthn/server')> | undefined
const webauthn = async (): Promise<typeof import('@simplewebauthn/server')> => await (loaded ??= import('@simplewebauthn/server'))

export type { AuthenticationResponseJSON, RegistrationResponseJSON }

/** How long a ceremony's challenge stays usable. */
export const CHALLENGE_TTL_MS = 5 * 60 * 1000

export interface RelyingParty {
  /** The RP id: PUBLIC_URL's hostname (a registrable domain or localhost, never an IP address). */
  id: string
  name: string
  /** Origins whose pages may answer a challenge. */
  origins: string[]
}

export function relyingParty (config: { publicUrl: string, publicOrigin: string, corsOrigins: string[] }): RelyingParty {
  return { id: new URL(config.publicUrl).hostname, name: new URL(config.publicUrl).host, origins: [...new Set([config.publicOrigin, ...config.corsOrigins])] }
}

export type AssertionFailure =
  /** The clientDataJSON is not readable, or its challenge is unknown, spent, expired, or another's. */
  | 'challenge'
  /** No passkey has the credential id the assertion names. */
  | 'unknown_credential'
  /** The passkey belongs to another user than the one the flow is for. */
  | 'wrong_user'
  /** The signature, origin, RP id or flags do not verify. */
  | 'invalid'
  /** A valid signature whose counter does not advance: a cloned authenticator. */
  | 'cloned'
  /** The passkey's counter moved (or the passkey went) between the check and the write. */
  | 'raced'

export type AssertionResult =
  | { ok: true, userId: string, passkeyId: string, credentialId: string }
  | { ok: false, reason: AssertionFailure, userId?: string, passkeyId?: string }

export type RegistrationResult =
  | { ok: true, passkey: Passkey }
  | { ok: false, reason: 'challenge' | 'invalid' | 'duplicate' }

const digest = (challenge: string): Buffer => createHash('sha256').update(challenge).digest()

/** The challenge a response's clientDataJSON carries, or null when it cannot be read. */
function challengeOf (clientDataJSON: unknown): string | null {
  if (typeof clientDataJSON !== 'string' || clientDataJSON.length > 8192) return null
  try {
    const data = JSON.parse(Buffer.from(clientDataJSON, 'base64url').toString('utf8')) as { challenge?: unknown }
    return typeof data.challenge === 'string' && data.challenge.length > 0 ? data.challenge : null
  } catch {
    return null
  }
}

export function createPasskeyService (repo: PasskeysRepository, rp: RelyingParty) {
  async function newChallenge (purpose: ChallengePurpose, userId: string | null, now: Date): Promise<Uint8Array<ArrayBuffer>> {
    const bytes = randomBytes(32)
    await repo.saveChallenge(digest(bytes.toString('base64url')), purpose, userId, new Date(now.getTime() + CHALLENGE_TTL_MS), now)
    return Uint8Array.from(bytes)
  }

  /** Consumes the challenge the response names; the challenge string when it was ours to spend. */
  async function spend (clientDataJSON: unknown, purpose: ChallengePurpose, userId: string | null, now: Date): Promise<string | null> {
    const challenge = challengeOf(clientDataJSON)
    if (challenge === null) return null
    return await repo.consumeChallenge(digest(challenge), purpose, userId, now) ? challenge : null
  }

  /** Creation options for a new passkey of `user`: discoverable, none of its existing ones again. */
  async function registrationOptions (user: { id: string, username: string }, now: Date): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const existing = await repo.listForUser(user.id)
    return await (await webauthn()).generateRegistrationOptions({
      rpName: rp.name,
      rpID: rp.id,
      userName: user.username,
      userID: new Uint8Array(Buffer.from(user.id, 'utf8')),
      challenge: await newChallenge('register', user.id, now),
      timeout: CHALLENGE_TTL_MS,
      attestationType: 'none',
      excludeCredentials: existing.map((p) => ({ id: p.credentialId, transports: p.transports })),
      authenticatorSelection: { residentKey: 'required', userVerification: 'preferred' }
    })
  }

  async function register (userId: string, response: RegistrationResponseJSON, name: string | undefined, now: Date): Promise<RegistrationResult> {
    const challenge = await spend(response.response?.clientDataJSON, 'register', userId, now)
    if (challenge === null) return { ok: false, reason: 'challenge' }
    let verified
    try {
      verified = await (await webauthn()).verifyRegistrationResponse({ response, expectedChallenge: challenge, expectedOrigin: rp.origins, expectedRPID: rp.id, requireUserVerification: false })
    } catch {
      return { ok: false, reason: 'invalid' }
    }
    if (!verified.verified) return { ok: false, reason: 'invalid' }
    const { credential } = verified.registrationInfo
    const passkey: Passkey = {
      id: randomUUID(),
      userId,
      credentialId: credential.id,
      publicKey: Buffer.from(credential.publicKey),
      counter: credential.counter,
      transports: (credential.transports ?? []).slice(0, 8),
      name: name ?? `Passkey ${now.toISOString().slice(0, 10)}`,
      createdAt: now,
      lastUsedAt: null
    }
    if (!await repo.insert(passkey)) return { ok: false, reason: 'duplicate' }
    return { ok: true, passkey }
  }

  /** Request options for signing in with a passkey alone: no allowCredentials (discoverable). */
  async function loginOptions (now: Date): Promise<PublicKeyCredentialRequestOptionsJSON> {
    return await (await webauthn()).generateAuthenticationOptions({ rpID: rp.id, challenge: await newChallenge('login', null, now), timeout: CHALLENGE_TTL_MS, userVerification: 'preferred' })
  }

  /**
   * Request options for a known user (second factor, step-up): allowCredentials lists the
   * user's passkeys; null when the user has none.
   */
  async function factorOptions (userId: string, now: Date): Promise<PublicKeyCredentialRequestOptionsJSON | null> {
    const existing = await repo.listForUser(userId)
    if (existing.length === 0) return null
    return await (await webauthn()).generateAuthenticationOptions({
      rpID: rp.id,
      challenge: await newChallenge('factor', userId, now),
      timeout: CHALLENGE_TTL_MS,
      userVerification: 'preferred',
      allowCredentials: existing.map((p) => ({ id: p.credentialId, transports: p.transports }))
    })
  }

  async function verifyAssertion (response: AuthenticationResponseJSON, purpose: 'login' | 'factor', userId: string | null, now: Date): Promise<AssertionResult> {
    const challenge = await spend(response.response?.clientDataJSON, purpose, userId, now)
    if (challenge === null) return { ok: false, reason: 'challenge' }
    const passkey = typeof response.id === 'string' ? await repo.findByCredentialId(response.id) : null
    if (passkey === null) return { ok: false, reason: 'unknown_credential' }
    const ids = { userId: passkey.userId, passkeyId: passkey.id }
    if (userId !== null && passkey.userId !== userId) return { ok: false, reason: 'wrong_user', ...ids }
    // A discoverable credential returns the user handle it was created with: it must be this user's.
    const handle = response.response.userHandle
    if (typeof handle === 'string' && handle !== '' && handle !== Buffer.from(passkey.userId, 'utf8').toString('base64url')) {
      return { ok: false, reason: 'wrong_user', ...ids }
    }
    let newCounter: number
    try {
      const verified = await (await webauthn()).verifyAuthenticationResponse({
        response,
        expectedChallenge: challenge,
        expectedOrigin: rp.origins,
        expectedRPID: rp.id,
        // Counter 0: the library's own counter check runs before the signature's; ours runs
        // after, so that only a validly signed assertion is reported as a clone.
        credential: { id: passkey.credentialId, publicKey: new Uint8Array(passkey.publicKey), counter: 0, transports: passkey.transports as never },
        requireUserVerification: false
      })
      if (!verified.verified) return { ok: false, reason: 'invalid', ...ids }
      newCounter = verified.authenticationInfo.newCounter
    } catch {
      return { ok: false, reason: 'invalid', ...ids }
    }
    if ((newCounter > 0 || passkey.counter > 0) && newCounter <= passkey.counter) return { ok: false, reason: 'cloned', ...ids }
    if (!await repo.recordUse(passkey.id, passkey.counter, newCounter, now)) return { ok: false, reason: 'raced', ...ids }
    return { ok: true, userId: passkey.userId, passkeyId: passkey.id, credentialId: passkey.credentialId }
  }

  return {
    relyingParty: rp,
    registrationOptions,
    register,
    loginOptions,
    factorOptions,
    /** Sign-in with a passkey alone: the assertion names its user. */
    verifyLogin: async (response: AuthenticationResponseJSON, now: Date) => await verifyAssertion(response, 'login', null, now),
    /** An assertion for a known user (second factor, step-up), against a challenge from `factorOptions`. */
    verifyFactor: async (userId: string, response: AuthenticationResponseJSON, now: Date) => await verifyAssertion(response, 'factor', userId, now),
    list: async (userId: string) => await repo.listForUser(userId),
    rename: async (id: string, userId: string, name: string) => await repo.rename(id, userId, name),
    remove: async (id: string, userId: string) => await repo.delete(id, userId)
  }
}

export type PasskeyService = ReturnType<typeof createPasskeyService>
