/**
 * The second factor: TOTP enrolment and removal, recovery codes, the second step of a login
 * (POST /mfa/verify) and step-up (POST /reauthenticate). docs/mfa.md describes the flows.
 *
 * Every code, recovery code, passkey assertion and password checked here counts in the
 * per-account login throttle exactly as a login's password does: reserved before the check,
 * settled as failed when wrong, and clearing the account's failures only when right.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { User } from '../../db/repositories/users.js'
import { usernameFold } from '../../src/auth/credentials.js'
import type { FactorInput } from '../../src/auth/mfa.js'
import {
  InvalidCurrentPassword, MfaCodeInvalid, MfaNotEnabled, MfaTokenInvalid, RateLimited, SessionEnded, TotpAlreadyEnabled, TotpNotEnrolled, TotpUnavailable, ValidationFailed
} from '../../src/errors.js'
import { PasswordInput, TokenResponseSchema, errors } from '../schemas.js'
import { routeLimit } from './limits.js'
import type { Mode, RefreshTransport } from './refresh-transport.js'

const Code = Type.String({ minLength: 1, maxLength: 16, description: 'The 6-digit TOTP code' })
const RecoveryCode = Type.String({ minLength: 1, maxLength: 32, description: 'One of the recovery codes (dashes and case do not matter)' })
/** Kept as sent (no schema): the passkey module checks the assertion (src/auth/passkey-factor.ts). */
const Webauthn = Type.Unknown({ description: 'A WebAuthn assertion response (passkeys)' })
const MfaToken = Type.String({ minLength: 1, maxLength: 64, description: 'The mfaToken of the login\'s 202 answer' })

const EnrollBody = Type.Object({ mfaToken: Type.Optional(MfaToken) }, { additionalProperties: false })
const EnrollResponse = Type.Object({
  secret: Type.String({ description: 'Base32, for typing into an authenticator app' }),
  otpauthUri: Type.String(),
  qrCode: Type.String({ description: 'The otpauth URI as a QR code (PNG data URL)' })
})
const ConfirmBody = Type.Object({ code: Code, mfaToken: Type.Optional(MfaToken) }, { additionalProperties: false })
const RecoveryCodesResponse = Type.Object({ recoveryCodes: Type.Array(Type.String(), { minItems: 10, maxItems: 10 }) })
const ConfirmResponse = Type.Object({
  recoveryCodes: Type.Array(Type.String(), { minItems: 10, maxItems: 10 }),
  // Present when the enrolment finished a login (mfaToken): what the login would have answered.
  accessToken: Type.Optional(Type.String()),
  tokenType: Type.Optional(Type.Literal('Bearer')),
  expiresIn: Type.Optional(Type.Integer()),
  refreshToken: Type.Optional(Type.String())
})
const DisableBody = Type.Object({ password: PasswordInput, code: Code }, { additionalProperties: false })
const PasswordBody = Type.Object({ password: PasswordInput }, { additionalProperties: false })
const VerifyBody = Type.Object({
  mfaToken: MfaToken,
  code: Type.Optional(Code),
  recoveryCode: Type.Optional(RecoveryCode),
  webauthn: Type.Optional(Webauthn)
}, { additionalProperties: false })
const ReauthenticateBody = Type.Object({
  password: Type.Optional(PasswordInput),
  code: Type.Optional(Code),
  recoveryCode: Type.Optional(RecoveryCode),
  webauthn: Type.Optional(Webauthn)
}, { additionalProperties: false })
const AccessTokenResponse = Type.Object({ accessToken: Type.String(), tokenType: Type.Literal('Bearer'), expiresIn: Type.Integer() })

/** Exactly one of the named fields, or 400. */
function exactlyOne (body: Record<string, unknown>, names: string[]): void {
  if (names.filter((n) => body[n] !== undefined).length !== 1) throw new ValidationFailed(`send exactly one of ${names.join(', ')}`)
}

const mfa: FastifyPluginAsyncTypebox<{ transport: RefreshTransport }> = async (app, { transport }) => {
  const { config, repos, passwords, sessionManager, loginThrottle } = app
  const limit = { rateLimit: routeLimit(config, config.rateLimit.login) }

  /**
   * Runs `check` as one guess of the account's credentials, counted by the login throttle:
   * null from `check` is a wrong guess (stays counted), anything else clears the failures.
   */
  async function guarded<T> (user: User, reply: FastifyReply, now: Date, check: () => Promise<T | null>): Promise<T | null> {
    const key = usernameFold(user.username)
    const reservation = await loginThrottle.reserve(key, now)
    if (!reservation.ok) {
      reply.header('retry-after', reservation.retryAfter)
      throw new RateLimited(String(reservation.retryAfter))
    }
    let outcome: 'failed' | 'unchecked' | 'right' = 'unchecked'
    try {
      const result = await check()
      outcome = result === null ? 'failed' : 'right'
      return result
    } finally {
      if (outcome === 'right') await loginThrottle.reset(key, now)
      else await loginThrottle.release(key, now, outcome)
    }
  }

  /** A second factor of `user`, counted by the throttle; throws MFA_CODE_INVALID when wrong. */
  async function secondFactor (request: FastifyRequest, reply: FastifyReply, user: User, input: FactorInput, now: Date, sessionId: string | null) {
    let clonedPasskey: string | undefined
    const result = await guarded(user, reply, now, async () => {
      const r = await app.mfa.verify(user.id, input, now, { origin: request.headers.origin })
      if (!r.ok) clonedPasskey = r.clonedPasskey
      return r.ok ? r : null
    })
    if (result === null) {
      // A copied authenticator, as on a passkey sign-in (routes/auth/passkeys.ts).
      if (clonedPasskey !== undefined) app.audit.record(request, 'passkey_clone_detected', { userId: user.id, sessionId, detail: { passkeyId: clonedPasskey } }, now)
      app.audit.record(request, 'mfa_failed', { userId: user.id, sessionId, detail: { method: input.code !== undefined ? 'otp' : input.recoveryCode !== undefined ? 'recovery' : 'webauthn' } }, now)
      throw new MfaCodeInvalid()
    }
    if (result.amr === 'recovery') {
      app.audit.record(request, 'recovery_code_used', { userId: user.id, sessionId, detail: { remaining: result.remainingRecoveryCodes } }, now)
    }
    return result
  }

  /** Starts the session a login finishes with, answered by the login's transport; null when the credential changed meanwhile. */
  async function startSession (request: FastifyRequest, reply: FastifyReply, user: User, mode: Mode, amr: string[], now: Date) {
    const issueAccess = app.accessTokenIssuer(now)
    const issued = await sessionManager.start(user, { userAgent: request.headers['user-agent'] ?? null, ip: request.ip, amr }, now, (sessionId) => {
      app.audit.recordNow(request, 'login_succeeded', { userId: user.id, sessionId, detail: { transport: mode, amr } }, now)
    })
    if (issued === null) return null
    const access = await issueAccess({ userId: user.id, sessionId: issued.session.id, roles: user.roles, amr, authTime: now, emailVerified: user.email === null ? null : user.emailVerified })
    request.log.info({ userId: user.id, sessionId: issued.session.id, outcome: 'success' }, 'login')
    app.metrics.loginOutcomes.inc({ outcome: 'success' })
    return transport.send(reply, mode, { ...access, ...issued }, now)
  }

  /** The user an unspent challenge of `purpose` names, while its password check still holds. */
  async function challengeUser (request: FastifyRequest, token: string, purpose: 'login' | 'enroll', now: Date) {
    const challenge = await app.mfa.findChallenge(token, purpose, request.headers['user-agent'] ?? null, now)
    if (challenge === null) throw new MfaTokenInvalid()
    // The same origin rules as the login that issued it, in cookie mode.
    if (challenge.transport === 'cookie') transport.checkOrigin(request)
    const user = await repos.users.findById(challenge.userId)
    if (user === null || user.disabled || user.credentialEpoch !== challenge.credentialEpoch) throw new MfaTokenInvalid()
    return { challenge, user }
  }

  /**
   * Enrolment is for the Bearer caller, or (enrolment forced by MFA_REQUIRED_ROLES) for the
   * holder of the login's enrolment challenge, sent as `mfaToken` in the body. The Bearer check
   * runs before validation, as on every Bearer route; the challenge is checked in the handler.
   */
  async function bearerUnlessMfaToken (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (request.body === undefined || request.body === null) request.body = {}
    if (typeof (request.body as { mfaToken?: unknown }).mfaToken !== 'string') await app.authenticate(request, reply)
  }

  async function enrolmentCaller (request: FastifyRequest, now: Date): Promise<{ user: User, sessionId: string | null, challenge: { id: number, transport: Mode } | null }> {
    if (request.principal === null) {
      const { challenge, user } = await challengeUser(request, (request.body as { mfaToken: string }).mfaToken, 'enroll', now)
      return { user, sessionId: null, challenge }
    }
    const user = await repos.users.findById(request.principal.userId)
    if (user === null) throw new SessionEnded()
    return { user, sessionId: request.principal.sessionId, challenge: null }
  }

  app.post('/mfa/totp/enroll', {
    schema: {
      summary: 'Start TOTP enrolment',
      description: 'A new secret, its otpauth:// URI and a QR code; pending until confirmed with a code (enrolling again before that replaces it). Bearer, or `{ mfaToken }` of a login answered `mfaEnrollmentRequired`.',
      tags: ['mfa'],
      security: [{ bearerAuth: [] }, {}],
      body: EnrollBody,
      response: { 200: EnrollResponse, ...errors(400, 401, 403, 409, 415, 429, 503) }
    },
    config: limit,
    preValidation: bearerUnlessMfaToken
  }, async (request, reply) => {
    const now = new Date()
    const { user } = await enrolmentCaller(request, now)
    if (!app.mfa.totp.available) throw new TotpUnavailable()
    const generated = await app.mfa.totp.generate(user.username)
    if (!await repos.mfa.setPendingTotp(user.id, app.mfa.totp.sealSecret(user.id, generated.secret), now)) throw new TotpAlreadyEnabled()
    reply.header('cache-control', 'no-store')
    return generated
  })

  app.post('/mfa/totp/confirm', {
    schema: {
      summary: 'Confirm TOTP enrolment',
      description: 'A correct code activates the pending factor and answers ten recovery codes, shown this once. With `mfaToken` (enrolment forced at login) it also finishes the login: the tokens come as the login\'s transport would give them.',
      tags: ['mfa'],
      security: [{ bearerAuth: [] }, {}],
      body: ConfirmBody,
      response: { 200: ConfirmResponse, ...errors(400, 401, 403, 409, 415, 429) }
    },
    config: limit,
    preValidation: bearerUnlessMfaToken
  }, async (request, reply) => {
    const now = new Date()
    const { user, sessionId, challenge } = await enrolmentCaller(request, now)
    const factor = await repos.mfa.totp(user.id)
    if (factor === null) throw new TotpNotEnrolled()
    if (factor.confirmedAt !== null) throw new TotpAlreadyEnabled()
    const secret = app.mfa.totp.openSecret(user.id, factor.secret)
    const step = await guarded(user, reply, now, async () => app.mfa.totp.matchStep(secret, request.body.code, now))
    if (step === null) {
      app.audit.record(request, 'mfa_failed', { userId: user.id, sessionId, detail: { method: 'otp', enrolment: true } }, now)
      throw new MfaCodeInvalid()
    }
    const recoveryCodes = app.mfa.recoveryCodes.generate()
    const digests = recoveryCodes.map((c) => app.mfa.recoveryCodes.digest(user.id, c))
    if (challenge !== null && !await app.mfa.spendChallenge(challenge.id, now)) throw new MfaTokenInvalid()
    if (!await repos.mfa.confirmTotp(user.id, step, digests, now)) throw new TotpNotEnrolled()
    app.audit.record(request, 'totp_enabled', { userId: user.id, sessionId }, now)
    reply.header('cache-control', 'no-store')
    if (challenge === null) return { recoveryCodes }
    const tokens = await startSession(request, reply, user, challenge.transport, ['pwd', 'otp'], now)
    if (tokens === null) throw new MfaTokenInvalid()
    return { recoveryCodes, ...tokens }
  })

  app.delete('/mfa/totp', {
    schema: {
      summary: 'Disable TOTP',
      description: 'Needs the password and a current code; the recovery codes go with the factor.',
      tags: ['mfa'],
      security: [{ bearerAuth: [] }],
      body: DisableBody,
      response: { 204: Type.Null(), ...errors(400, 401, 403, 409, 415, 429) }
    },
    config: limit,
    preValidation: app.authenticate
  }, async (request, reply) => {
    const now = new Date()
    const { userId, sessionId } = request.principal!
    const user = await repos.users.findById(userId)
    if (user === null) throw new SessionEnded()
    const factor = await repos.mfa.totp(userId)
    if (factor?.confirmedAt == null) throw new MfaNotEnabled()
    const checked = await guarded(user, reply, now, async () => {
      if (!await passwords.verify(user.passwordHash, request.body.password.normalize('NFKC'))) return null
      const r = await app.mfa.verify(userId, { code: request.body.code }, now, { origin: request.headers.origin })
      return r.ok ? r : null
    })
    if (checked === null) {
      app.audit.record(request, 'mfa_failed', { userId, sessionId, detail: { method: 'otp', disable: true } }, now)
      throw new MfaCodeInvalid()
    }
    await repos.mfa.deleteTotp(userId)
    app.audit.record(request, 'totp_disabled', { userId, sessionId }, now)
    return reply.code(204).send(null)
  })

  app.post('/mfa/recovery-codes', {
    schema: {
      summary: 'New recovery codes',
      description: 'Ten new single-use codes, shown this once; the old set stops working. Needs the password.',
      tags: ['mfa'],
      security: [{ bearerAuth: [] }],
      body: PasswordBody,
      response: { 200: RecoveryCodesResponse, ...errors(400, 401, 403, 409, 415, 429) }
    },
    config: limit,
    preValidation: app.authenticate
  }, async (request, reply) => {
    const now = new Date()
    const { userId, sessionId } = request.principal!
    const user = await repos.users.findById(userId)
    if (user === null) throw new SessionEnded()
    const factor = await repos.mfa.totp(userId)
    if (factor?.confirmedAt == null) throw new MfaNotEnabled()
    const right = await guarded(user, reply, now, async () => await passwords.verify(user.passwordHash, request.body.password.normalize('NFKC')) ? true : null)
    if (right === null) throw new InvalidCurrentPassword()
    const recoveryCodes = app.mfa.recoveryCodes.generate()
    await repos.mfa.replaceRecoveryCodes(userId, recoveryCodes.map((c) => app.mfa.recoveryCodes.digest(userId, c)), now)
    app.audit.record(request, 'recovery_codes_generated', { userId, sessionId }, now)
    reply.header('cache-control', 'no-store')
    return { recoveryCodes }
  })

  app.post('/mfa/verify', {
    schema: {
      summary: 'Finish a login with a second factor',
      description: 'The mfaToken of the login\'s 202 answer and one of a TOTP `code`, a `recoveryCode` or a passkey assertion (`webauthn`). Answers what the login would have: tokens by the login\'s transport. The mfaToken is single use, expires within 5 minutes, works only from the client that logged in, and not after a password change. A wrong code counts like a wrong password (403 MFA_CODE_INVALID; the mfaToken stays usable until it expires).',
      tags: ['mfa'],
      body: VerifyBody,
      response: { 200: TokenResponseSchema, ...errors(400, 401, 403, 415, 429) }
    },
    config: limit
  }, async (request, reply) => {
    const now = new Date()
    exactlyOne(request.body, ['code', 'recoveryCode', 'webauthn'])
    const { challenge, user } = await challengeUser(request, request.body.mfaToken, 'login', now)
    const { mfaToken: _token, ...input } = request.body
    const factor = await secondFactor(request, reply, user, input, now, null)
    if (!await app.mfa.spendChallenge(challenge.id, now)) throw new MfaTokenInvalid()
    const tokens = await startSession(request, reply, user, challenge.transport, ['pwd', factor.amr], now)
    if (tokens === null) throw new MfaTokenInvalid()
    return tokens
  })

  app.post('/reauthenticate', {
    schema: {
      summary: 'Prove a credential again (step-up)',
      description: 'One of `password`, a TOTP `code`, a `recoveryCode` or a passkey assertion (`webauthn`). The session\'s auth_time becomes now and the method joins its amr; the answer is a new access token carrying both. Wrong credentials count like wrong passwords.',
      tags: ['mfa'],
      security: [{ bearerAuth: [] }],
      body: ReauthenticateBody,
      response: { 200: AccessTokenResponse, ...errors(400, 401, 403, 409, 415, 429) }
    },
    config: limit,
    preValidation: app.authenticate
  }, async (request, reply) => {
    const now = new Date()
    exactlyOne(request.body, ['password', 'code', 'recoveryCode', 'webauthn'])
    const { userId, sessionId } = request.principal!
    const user = await repos.users.findById(userId)
    if (user === null) throw new SessionEnded()
    let method: string
    const { password, ...factor } = request.body
    if (password !== undefined) {
      const right = await guarded(user, reply, now, async () => await passwords.verify(user.passwordHash, password.normalize('NFKC')) ? true : null)
      if (right === null) throw new InvalidCurrentPassword()
      method = 'pwd'
    } else {
      method = (await secondFactor(request, reply, user, factor, now, sessionId)).amr
    }
    const issueAccess = app.accessTokenIssuer(now)
    const session = await repos.sessions.stepUp(sessionId, method, now)
    if (session === null) throw new SessionEnded()
    app.audit.record(request, 'reauthenticated', { userId, sessionId, detail: { method } }, now)
    reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
    const access = await issueAccess({ userId, sessionId, roles: user.roles, amr: session.amr, authTime: now, emailVerified: user.email === null ? null : user.emailVerified })
    return { ...access, tokenType: 'Bearer' as const }
  })
}

export default mfa
