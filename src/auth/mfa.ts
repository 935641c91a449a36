/**
 * The second factor, as the routes use it: which methods an account offers, the MFA challenge
 * token of a login half done, and the check of one factor (a TOTP code, a recovery code, or a
 * passkey assertion through src/auth/passkey-factor.ts). Each check that succeeds spends what
 * it used (the code's time step, the recovery code) in one conditional update, so a code
 * works once even when two requests race with it.
 *
 * The MFA token is 256 random bits, base64url, without dots: it can never parse as a JWT (an
 * access token) nor as a refresh token (whose codec checks its length and an authenticated
 * selector); the database keeps only its SHA-256.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { MfaChallenge, MfaRepository } from '../../db/repositories/mfa.js'
import { PasskeyFactorUnavailable } from '../errors.js'
import type { PasskeyFactor, PasskeyFactorContext } from './passkey-factor.js'
import type { RecoveryCodes } from './recovery-codes.js'
import type { Totp } from './totp.js'

/** How long a login may take between the password and the second factor. */
export const MFA_CHALLENGE_TTL_MS = 5 * 60 * 1000

export type MfaMethod = 'totp' | 'recovery' | 'webauthn'
/** RFC 8176 names, as they go into `amr`. */
export type AmrValue = 'pwd' | 'otp' | 'recovery' | 'webauthn'

export interface FactorInput {
  code?: string
  recoveryCode?: string
  webauthn?: unknown
}

export type FactorResult = { ok: true, amr: 'otp' | 'recovery' | 'webauthn', remainingRecoveryCodes?: number } | { ok: false, clonedPasskey?: string }

const MFA_TOKEN = /^[A-Za-z0-9_-]{43}$/

export function hashMfaToken (token: string): Buffer {
  return createHash('sha256').update(token).digest()
}

export function createMfa (deps: { repo: MfaRepository, totp: Totp, recoveryCodes: RecoveryCodes, requiredRoles: string[], passkeys: PasskeyFactor }) {
  const { repo, totp, recoveryCodes, passkeys } = deps
  const required = new Set(deps.requiredRoles)

  return {
    totp,
    recoveryCodes,
    passkeys,

    /** The second factors an account can complete a login with; empty when it has none. */
    async methods (userId: string): Promise<MfaMethod[]> {
      const methods: MfaMethod[] = []
      const factor = await repo.totp(userId)
      if (factor?.confirmedAt != null) {
        methods.push('totp')
        if (await repo.unusedRecoveryCodes(userId) > 0) methods.push('recovery')
      }
      if (await passkeys.has(userId)) methods.push('webauthn')
      return methods
    },

    /** True when MFA_REQUIRED_ROLES names one of these roles (or is `*`). */
    requiredFor (roles: string[]): boolean {
      return required.has('*') || roles.some((r) => required.has(r))
    },

    /** A new challenge; answers the token to hand to the client. */
    async issueChallenge (c: { userId: string, purpose: 'login' | 'enroll', transport: 'cookie' | 'body', userAgent: string | null, credentialEpoch: number }, now: Date): Promise<string> {
      const token = randomBytes(32).toString('base64url')
      await repo.createChallenge({ ...c, userAgent: c.userAgent?.slice(0, 512) ?? null, tokenHash: hashMfaToken(token), now, expiresAt: new Date(now.getTime() + MFA_CHALLENGE_TTL_MS) })
      return token
    },

    /**
     * The unused, unexpired challenge of this token, when it was issued for `purpose` to a
     * client with this user agent; null otherwise (the caller answers MFA_TOKEN_INVALID).
     */
    async findChallenge (token: string, purpose: 'login' | 'enroll', userAgent: string | null, now: Date): Promise<MfaChallenge | null> {
      if (!MFA_TOKEN.test(token)) return null
      const c = await repo.findChallenge(hashMfaToken(token))
      if (c === null || c.purpose !== purpose || c.usedAt !== null || c.expiresAt <= now) return null
      if (c.userAgent !== (userAgent?.slice(0, 512) ?? null)) return null
      return c
    },

    spendChallenge: async (id: number, now: Date): Promise<boolean> => await repo.spendChallenge(id, now),

    /**
     * Checks one factor and spends what it used. `{ ok: false }` for a wrong, replayed or
     * unusable code (counted by the caller like a wrong password); throws 400
     * PASSKEY_FACTOR_UNAVAILABLE for a passkey assertion while no passkey factor exists.
     */
    async verify (userId: string, input: FactorInput, now: Date, context: Omit<PasskeyFactorContext, 'now'>): Promise<FactorResult> {
      if (input.webauthn !== undefined) {
        if (!await passkeys.has(userId)) throw new PasskeyFactorUnavailable()
        const r = await passkeys.verify(userId, input.webauthn, { ...context, now })
        return r.ok ? { ok: true, amr: 'webauthn' } : { ok: false, clonedPasskey: r.cloned }
      }
      if (input.code !== undefined) {
        const factor = await repo.totp(userId)
        if (factor?.confirmedAt == null) return { ok: false }
        const step = totp.matchStep(totp.openSecret(userId, factor.secret), input.code, now)
        if (step === null) return { ok: false }
        return await repo.useTotpStep(userId, step) ? { ok: true, amr: 'otp' } : { ok: false }
      }
      if (input.recoveryCode !== undefined) {
        const used = await repo.useRecoveryCode(userId, recoveryCodes.digest(userId, input.recoveryCode), now)
        return used ? { ok: true, amr: 'recovery', remainingRecoveryCodes: await repo.unusedRecoveryCodes(userId) } : { ok: false }
      }
      return { ok: false }
    }
  }
}

export type Mfa = ReturnType<typeof createMfa>
