/** Login, refresh, logout and logout-all: the endpoints that issue and end sessions. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { FastifyRequest } from 'fastify'
import { refresh, type RefreshDeps } from '../../src/auth/refresh.js'
import { normalizeUsername, usernameFold } from '../../src/auth/credentials.js'
import { EmailNotVerified, InvalidCredentials, LoginIdentifierRefused, RateLimited } from '../../src/errors.js'
import { emailKey, normalizeEmail, verificationPending } from '../../src/auth/email.js'
import type { User } from '../../db/repositories/users.js'
import { EmailInput, MfaChallengeResponse, PasswordInput, RefreshTokenInput, TokenResponseSchema, Transport, UsernameInput, errors } from '../schemas.js'
import { routeLimit } from './limits.js'
import type { RefreshTransport } from './refresh-transport.js'

// One of `username` and `email`: checked in the handler (400 LOGIN_IDENTIFIER_REFUSED), which
// can say what was wrong; a schema union would have the validator strip the extra property.
const LoginBody = Type.Object({
  username: Type.Optional(UsernameInput),
  email: Type.Optional(EmailInput),
  password: PasswordInput,
  transport: Type.Optional(Transport)
}, { additionalProperties: false, description: 'The account named by `username` or by `email` (one of them; LOGIN_IDENTIFIERS says which are accepted), and its password' })

const RefreshBody = Type.Object({
  refreshToken: Type.Optional(RefreshTokenInput)
}, { additionalProperties: false })

/** Refresh and logout take an optional body: a cookie-mode request may send none at all. */
async function emptyBodyIsObject (request: { body: unknown }): Promise<void> {
  if (request.body === undefined || request.body === null) request.body = {}
}

const tokens: FastifyPluginAsyncTypebox<{ transport: RefreshTransport }> = async (app, { transport }) => {
  const { config, repos, passwords, sessionManager, loginThrottle } = app
  const refreshDeps: RefreshDeps<FastifyRequest> = {
    sessionManager,
    accessTokenIssuer: (now) => app.accessTokenIssuer(now),
    recordAudit: (request, type, fields, now) => { app.audit.recordNow(request, type, fields, now) }
  }

  app.post('/login', {
    schema: {
      summary: 'Log in with username or e-mail address, and password',
      description: 'Starts a session. With REQUIRE_EMAIL_VERIFICATION=true, an account whose address is not verified gets 403 EMAIL_NOT_VERIFIED once its password is right (a wrong one is the usual 401). The account is named by `username` or `email`, as LOGIN_IDENTIFIERS allows (an identifier it does not accept: 400 LOGIN_IDENTIFIER_REFUSED). Cookie mode (default) sets the httpOnly refresh cookie; `"transport": "body"` returns `refreshToken` in the body instead. Unknown user and wrong password get one identical 401. An account with a second factor answers 202 `{ mfaRequired, mfaToken, methods }` instead (finish with POST /api/auth/mfa/verify); an account that MFA_REQUIRED_ROLES obliges to have one and has none answers 202 `{ mfaEnrollmentRequired, mfaToken }` (enrol with the mfaToken, docs/mfa.md).',
      tags: ['tokens'],
      body: LoginBody,
      response: { 200: TokenResponseSchema, 202: MfaChallengeResponse, ...errors(400, 401, 403, 415, 429) }
    },
    config: { rateLimit: routeLimit(config, config.rateLimit.login) }
  }, async (request, reply) => {
    const now = new Date()
    const mode = request.body.transport ?? config.refresh.transportDefault
    if (mode === 'cookie') transport.checkOrigin(request)

    // The account the login names, looked up before the throttle (an indexed read, no hashing)
    // only for an address: attempts count per account, by its username's fold key, so that
    // naming it by address or by any spelling of its name draws on one budget. An address of
    // no account has a budget of its own.
    let key: string
    let lookup: () => Promise<User | null>
    const { username: givenName, email: givenEmail } = request.body
    if ((givenName === undefined) === (givenEmail === undefined)) throw new LoginIdentifierRefused('Give either username or email')
    if (givenEmail !== undefined) {
      if (!config.loginIdentifiers.includes('email')) throw new LoginIdentifierRefused('Log in with your username (LOGIN_IDENTIFIERS does not accept email)')
      const address = emailKey(normalizeEmail(givenEmail))
      const byEmail = await repos.users.findByEmailKey(address)
      key = byEmail === null ? `email:${address}` : usernameFold(normalizeUsername(byEmail.username))
      lookup = async () => byEmail
    } else {
      if (!config.loginIdentifiers.includes('username')) throw new LoginIdentifierRefused('Log in with your e-mail address (LOGIN_IDENTIFIERS does not accept username)')
      const name = normalizeUsername(givenName!)
      // Every spelling of one name shares one budget.
      key = usernameFold(name)
      lookup = async () => await repos.users.findByUsername(name)
    }
    // The guess is counted before its password is hashed, so that guesses sent at once cannot
    // all pass the per-account limit while the first ones are still hashing.
    const reservation = await loginThrottle.reserve(key, now)
    if (!reservation.ok) {
      app.metrics.loginOutcomes.inc({ outcome: 'throttled' })
      reply.header('retry-after', reservation.retryAfter)
      throw new RateLimited(String(reservation.retryAfter))
    }
    // Every reservation is settled once, whatever happens below (a database error included).
    let outcome: 'failed' | 'unchecked' | 'right' = 'unchecked'
    try {
      const password = request.body.password.normalize('NFKC')
      const user = await lookup()
      // Unknown users cost one verification too, so that timing does not tell them apart.
      const valid = user === null ? await passwords.verifyDummy(password) : await passwords.verify(user.passwordHash, password)
      const refuse = (reason: 'unknown_user' | 'wrong_password' | 'disabled' | 'credential_changed'): Error => {
        outcome = 'failed'
        request.log.info({ outcome: 'failure' }, 'login failed')
        app.metrics.loginOutcomes.inc({ outcome: 'invalid_credentials' })
        // The name tried for an unknown user is not kept: people type passwords into that field.
        app.audit.record(request, 'login_failed', { userId: user?.id ?? null, detail: { reason } }, now)
        return new InvalidCredentials()
      }
      if (user === null) throw refuse('unknown_user')
      if (!valid) throw refuse('wrong_password')
      if (user.disabled) throw refuse('disabled')
      // Only after the password is right: without it, this answer tells nothing about the
      // account. Nothing is re-sent (POST /email/verification does that, when asked).
      if (verificationPending(config.emailVerification.required, user)) {
        outcome = 'right'
        request.log.info({ userId: user.id, outcome: 'email_not_verified' }, 'login refused: address not verified')
        app.audit.record(request, 'login_failed', { userId: user.id, detail: { reason: 'email_not_verified' } }, now)
        throw new EmailNotVerified()
      }
      if (passwords.needsRehash(user.passwordHash)) {
        await repos.users.rehashPassword(user.id, user.passwordHash, await passwords.hash(password))
      }

      // A second factor is due (or, under MFA_REQUIRED_ROLES, must first be enrolled): the
      // password alone starts nothing. The client gets a single-use challenge token bound to
      // this login. The password's reservation is given back unsettled, so the account's
      // failures stay counted: a right password must not clear the wrong codes guessed before.
      const methods = await app.mfa.methods(user.id)
      const enrol = methods.length === 0 && app.mfa.requiredFor(user.roles)
      if (methods.length > 0 || enrol) {
        const mfaToken = await app.mfa.issueChallenge({
          userId: user.id, purpose: enrol ? 'enroll' : 'login', transport: mode, userAgent: request.headers['user-agent'] ?? null, credentialEpoch: user.credentialEpoch
        }, now)
        request.log.info({ userId: user.id, outcome: enrol ? 'mfa_enrollment_required' : 'mfa_required' }, 'login needs a second factor')
        app.metrics.loginOutcomes.inc({ outcome: enrol ? 'mfa_enrollment_required' : 'mfa_required' })
        reply.code(202).header('cache-control', 'no-store')
        if (enrol) return { mfaEnrollmentRequired: true as const, mfaToken }
        const webauthnOptions = methods.includes('webauthn') ? await app.mfa.passkeys.options(user.id, now) ?? undefined : undefined
        return { mfaRequired: true as const, mfaToken, methods, webauthnOptions }
      }

      // The signing key is chosen before the session is written: a login that cannot be answered
      // (no key can sign) leaves nothing behind.
      const issueAccess = app.accessTokenIssuer(now)
      // The audit event is written in the session's own transaction: one commit (one fsync with
      // DATABASE_SYNCHRONOUS=FULL) per login instead of two. The session starts only while the
      // password checked above is still the account's credential (see sessionManager.start): a
      // password change, logout-all or disable that committed meanwhile refuses it.
      const issued = await sessionManager.start(user, { userAgent: request.headers['user-agent'] ?? null, ip: request.ip, amr: ['pwd'] }, now, (sessionId) => {
        app.audit.recordNow(request, 'login_succeeded', { userId: user.id, sessionId, detail: { transport: mode } }, now)
      })
      if (issued === null) throw refuse('credential_changed')
      outcome = 'right'
      const access = await issueAccess({ userId: user.id, sessionId: issued.session.id, roles: user.roles, amr: issued.session.amr, authTime: now, emailVerified: user.email === null ? null : user.emailVerified })
      request.log.info({ userId: user.id, sessionId: issued.session.id, outcome: 'success' }, 'login')
      app.metrics.loginOutcomes.inc({ outcome: 'success' })
      return transport.send(reply, mode, { ...access, ...issued }, now)
    } finally {
      if (outcome === 'right') await loginThrottle.reset(key, now)
      else await loginThrottle.release(key, now, outcome)
    }
  })

  app.post('/refresh', {
    schema: {
      summary: 'Rotate the refresh token',
      description: 'Spends the presented refresh token (cookie, or `refreshToken` in the body) and returns a new one with a new access token. A token re-presented within REFRESH_REUSE_INTERVAL gets the same new token; later, the whole session is ended.',
      tags: ['tokens'],
      // The refresh cookie, or (body mode) no scheme at all: the token is in the body.
      security: [{ refreshCookie: [] }, {}],
      body: RefreshBody,
      response: { 200: TokenResponseSchema, ...errors(400, 401, 403, 415, 429) }
    },
    config: { rateLimit: routeLimit(config, config.rateLimit.refresh) },
    preValidation: emptyBodyIsObject
  }, async (request, reply) => {
    const now = new Date()
    const { token, mode } = transport.read(request)
    const outcome = await refresh(refreshDeps, token, now, request)
    app.metrics.refreshOutcomes.inc({ outcome: outcome.metricLabel })
    if (!outcome.ok) {
      // A refused token is of no more use: the cookie that held it goes (none came: none to clear).
      if (outcome.reason !== 'missing') {
        request.log.info({ reason: outcome.reason, sessionId: outcome.sessionId }, 'refresh refused')
        if (mode === 'cookie') transport.clear(reply)
      }
      throw outcome.error
    }
    return transport.send(reply, mode, outcome.tokens, now)
  })

  app.post('/logout', {
    schema: {
      summary: 'End the session of a refresh token',
      description: 'Ends the session the presented refresh token belongs to and clears the cookie. Answers 204 also when no token or an unknown one is presented.',
      tags: ['tokens'],
      // The refresh cookie, or (body mode) no scheme at all: the token is in the body.
      security: [{ refreshCookie: [] }, {}],
      body: RefreshBody,
      response: { 204: Type.Null(), ...errors(400, 403, 415) }
    },
    preValidation: emptyBodyIsObject
  }, async (request, reply) => {
    const { token, mode } = transport.read(request)
    if (token !== undefined) {
      const ended = await sessionManager.endByToken(token, 'logout', new Date())
      if (ended !== null) {
        request.log.info(ended, 'logout')
        app.audit.record(request, 'logout', { userId: ended.userId, sessionId: ended.sessionId })
      }
    }
    if (mode === 'cookie') transport.clear(reply)
    return reply.code(204).send(null)
  })

  app.post('/logout-all', {
    schema: {
      summary: 'End every session of the caller',
      tags: ['tokens'],
      security: [{ bearerAuth: [] }],
      response: { 204: Type.Null(), ...errors(401) }
    },
    preValidation: app.authenticate
  }, async (request, reply) => {
    const { userId } = request.principal!
    const count = await repos.sessions.revokeAllForUser(userId, 'logout_all', new Date())
    request.log.info({ userId, count }, 'logout-all')
    app.audit.record(request, 'logout_all', { userId, sessionId: request.principal!.sessionId, detail: { count } })
    transport.clear(reply)
    return reply.code(204).send(null)
  })
}

export default tokens
