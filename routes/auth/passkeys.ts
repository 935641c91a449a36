/**
 * Passkeys: registering them (Bearer), signing in with one alone (no username: discoverable
 * credentials), listing, renaming and deleting them (Bearer). The ceremonies' rules live in
 * src/auth/passkeys.ts; this file maps them to HTTP.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '../../src/auth/passkeys.js'
import { verificationPending } from '../../src/auth/email.js'
import { EmailNotVerified, PasskeyInvalid, PasskeyNotFound, PasskeyRegistrationFailed } from '../../src/errors.js'
import { TokenResponseSchema, Transport, errors } from '../schemas.js'
import { routeLimit } from './limits.js'
import type { RefreshTransport } from './refresh-transport.js'

const B64 = (max: number) => Type.String({ minLength: 1, maxLength: max, pattern: '^[A-Za-z0-9_-]+={0,2}$' })
const Common = {
  id: B64(1366),
  rawId: B64(1366),
  type: Type.Literal('public-key'),
  authenticatorAttachment: Type.Optional(Type.Union([Type.Literal('platform'), Type.Literal('cross-platform')])),
  clientExtensionResults: Type.Object({}, { additionalProperties: true })
}

/** What @simplewebauthn/browser's startRegistration answers (RegistrationResponseJSON). */
export const AttestationResponse = Type.Object({
  ...Common,
  response: Type.Object({
    clientDataJSON: B64(8192),
    attestationObject: B64(65536),
    authenticatorData: Type.Optional(B64(65536)),
    transports: Type.Optional(Type.Array(Type.String({ maxLength: 32 }), { maxItems: 8 })),
    publicKeyAlgorithm: Type.Optional(Type.Integer()),
    publicKey: Type.Optional(B64(8192))
  }, { additionalProperties: false })
}, { additionalProperties: false, description: 'The attestation as @simplewebauthn/browser `startRegistration` returns it' })

/** What @simplewebauthn/browser's startAuthentication answers (AuthenticationResponseJSON). */
export const AssertionResponse = Type.Object({
  ...Common,
  response: Type.Object({
    clientDataJSON: B64(8192),
    authenticatorData: B64(65536),
    signature: B64(8192),
    userHandle: Type.Optional(Type.String({ maxLength: 128, pattern: '^[A-Za-z0-9_-]*={0,2}$' }))
  }, { additionalProperties: false })
}, { additionalProperties: false, description: 'The assertion as @simplewebauthn/browser `startAuthentication` returns it' })

const Name = Type.String({ minLength: 1, maxLength: 64, description: 'A label the user chooses (1 to 64 characters)' })
const Options = Type.Object({ challenge: Type.String() }, { additionalProperties: true, description: 'PublicKeyCredentialCreationOptionsJSON / RequestOptionsJSON, for @simplewebauthn/browser' })

const PasskeySchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  transports: Type.Array(Type.String())
}, { $id: 'Passkey' })

const view = (p: { id: string, name: string, createdAt: Date, lastUsedAt: Date | null, transports: string[] }) => ({
  id: p.id, name: p.name, createdAt: p.createdAt.toISOString(), lastUsedAt: p.lastUsedAt?.toISOString() ?? null, transports: p.transports
})

const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) })

const passkeyRoutes: FastifyPluginAsyncTypebox<{ transport: RefreshTransport }> = async (app, { transport }) => {
  const { config, repos, passkeys, sessionManager } = app

  app.post('/passkeys/register/options', {
    schema: {
      summary: 'Start registering a passkey',
      description: 'WebAuthn creation options for the caller: a discoverable credential (residentKey required), user verification preferred, the caller\'s existing passkeys excluded. The challenge is single use and expires in 5 minutes.',
      tags: ['passkeys'],
      security: [{ bearerAuth: [] }],
      response: { 200: Options, ...errors(401) }
    },
    preValidation: app.authenticate
  }, async (request) => {
    const { userId, username } = request.principal!
    return await passkeys.registrationOptions({ id: userId, username }, new Date())
  })

  app.post('/passkeys/factor/options', {
    schema: {
      summary: 'Start a step-up with a passkey',
      description: 'WebAuthn request options listing the caller\'s passkeys, for the assertion sent to POST /api/auth/reauthenticate as `webauthn`. Single use, 5 minutes. 404 PASSKEY_NOT_FOUND when the caller has none. (A login\'s second factor gets its options in the login\'s 202 answer, `webauthnOptions`.)',
      tags: ['passkeys'],
      security: [{ bearerAuth: [] }],
      response: { 200: Options, ...errors(401, 404) }
    },
    preValidation: app.authenticate
  }, async (request) => {
    const options = await passkeys.factorOptions(request.principal!.userId, new Date())
    if (options === null) throw new PasskeyNotFound()
    return options
  })

  app.post('/passkeys/register', {
    schema: {
      summary: 'Register a passkey',
      description: 'Verifies the attestation against a registration challenge of the caller (spent by this request whatever its outcome) and stores the passkey.',
      tags: ['passkeys'],
      security: [{ bearerAuth: [] }],
      body: Type.Object({ response: AttestationResponse, name: Type.Optional(Name) }, { additionalProperties: false }),
      response: { 201: PasskeySchema, ...errors(400, 401) }
    },
    preValidation: app.authenticate
  }, async (request, reply) => {
    const now = new Date()
    const { userId, sessionId } = request.principal!
    const result = await passkeys.register(userId, request.body.response as RegistrationResponseJSON, request.body.name, now)
    if (!result.ok) {
      request.log.info({ userId, reason: result.reason }, 'passkey registration refused')
      throw new PasskeyRegistrationFailed({
        challenge: 'the challenge is unknown, already used or expired; ask for new options',
        invalid: 'the attestation does not verify',
        duplicate: 'this passkey is registered already'
      }[result.reason])
    }
    app.audit.record(request, 'passkey_registered', { userId, sessionId, detail: { passkeyId: result.passkey.id } }, now)
    return reply.code(201).send(view(result.passkey))
  })

  app.post('/passkeys/login/options', {
    schema: {
      summary: 'Start signing in with a passkey',
      description: 'WebAuthn request options without allowCredentials: the authenticator offers the discoverable passkeys it holds for this site (also to the browser\'s autofill). Single use, 5 minutes.',
      tags: ['passkeys'],
      response: { 200: Options, ...errors() }
    },
    config: { rateLimit: routeLimit(config, config.rateLimit.login) }
  }, async () => await passkeys.loginOptions(new Date()))

  app.post('/passkeys/login', {
    schema: {
      summary: 'Sign in with a passkey',
      description: 'Verifies the assertion against a sign-in challenge (spent by this request whatever its outcome) and starts a session, answered like a login: cookie mode (default) sets the refresh cookie under the same cross-site rules; `"transport": "body"` returns `refreshToken`. Every refusal is one 401 PASSKEY_INVALID; an assertion whose signature counter does not advance (a cloned authenticator) is refused and audited.',
      tags: ['passkeys'],
      body: Type.Object({ response: AssertionResponse, transport: Type.Optional(Transport) }, { additionalProperties: false }),
      response: { 200: TokenResponseSchema, ...errors(400, 401, 403) }
    },
    config: { rateLimit: routeLimit(config, config.rateLimit.login) }
  }, async (request, reply) => {
    const now = new Date()
    const mode = request.body.transport ?? config.refresh.transportDefault
    if (mode === 'cookie') transport.checkOrigin(request)
    const result = await passkeys.verifyLogin(request.body.response as AuthenticationResponseJSON, now)
    const refuse = (reason: string, userId: string | null, passkeyId?: string): Error => {
      request.log.info({ reason, userId, outcome: 'failure' }, 'passkey login failed')
      app.metrics.loginOutcomes.inc({ outcome: 'invalid_credentials' })
      if (reason === 'cloned') app.audit.record(request, 'passkey_clone_detected', { userId, detail: { passkeyId } }, now)
      app.audit.record(request, 'login_failed', { userId, detail: { method: 'webauthn', reason, ...(passkeyId === undefined ? {} : { passkeyId }) } }, now)
      return new PasskeyInvalid()
    }
    if (!result.ok) throw refuse(result.reason, result.userId ?? null, result.passkeyId)
    const user = await repos.users.findById(result.userId)
    if (user === null) throw refuse('unknown_user', null, result.passkeyId)
    if (user.disabled) throw refuse('disabled', user.id, result.passkeyId)
    // As a password login: with REQUIRE_EMAIL_VERIFICATION, an unverified account starts no
    // session (after the passkey is verified, so the answer tells a stranger nothing).
    if (verificationPending(config.emailVerification.required, user)) {
      request.log.info({ userId: user.id, outcome: 'email_not_verified', method: 'webauthn' }, 'passkey login refused: address not verified')
      app.audit.record(request, 'login_failed', { userId: user.id, detail: { method: 'webauthn', reason: 'email_not_verified', passkeyId: result.passkeyId } }, now)
      throw new EmailNotVerified()
    }

    // As login: the key that signs is chosen before the session is written.
    const issueAccess = app.accessTokenIssuer(now)
    const issued = await sessionManager.start(user, { userAgent: request.headers['user-agent'] ?? null, ip: request.ip, amr: ['webauthn'] }, now, (sessionId) => {
      app.audit.recordNow(request, 'login_succeeded', { userId: user.id, sessionId, detail: { transport: mode, method: 'webauthn', passkeyId: result.passkeyId } }, now)
    })
    if (issued === null) throw refuse('credential_changed', user.id, result.passkeyId)
    const access = await issueAccess({ userId: user.id, sessionId: issued.session.id, roles: user.roles, amr: issued.session.amr, authTime: now, emailVerified: user.email === null ? null : user.emailVerified })
    request.log.info({ userId: user.id, sessionId: issued.session.id, outcome: 'success', method: 'webauthn' }, 'login')
    app.metrics.loginOutcomes.inc({ outcome: 'success' })
    return transport.send(reply, mode, { ...access, ...issued }, now)
  })

  app.get('/passkeys', {
    schema: {
      summary: 'List the caller\'s passkeys',
      tags: ['passkeys'],
      security: [{ bearerAuth: [] }],
      response: { 200: Type.Array(PasskeySchema), ...errors(401) }
    },
    preValidation: app.authenticate
  }, async (request) => (await passkeys.list(request.principal!.userId)).map(view))

  app.patch('/passkeys/:id', {
    schema: {
      summary: 'Rename one of the caller\'s passkeys',
      tags: ['passkeys'],
      security: [{ bearerAuth: [] }],
      params: IdParams,
      body: Type.Object({ name: Name }, { additionalProperties: false }),
      response: { 200: PasskeySchema, ...errors(400, 401, 404) }
    },
    preValidation: app.authenticate
  }, async (request) => {
    const { userId, sessionId } = request.principal!
    const renamed = await passkeys.rename(request.params.id, userId, request.body.name)
    if (renamed === null) throw new PasskeyNotFound()
    app.audit.record(request, 'passkey_renamed', { userId, sessionId, detail: { passkeyId: renamed.id } })
    return view(renamed)
  })

  app.delete('/passkeys/:id', {
    schema: {
      summary: 'Delete one of the caller\'s passkeys',
      description: '404 for an unknown passkey or another user\'s.',
      tags: ['passkeys'],
      security: [{ bearerAuth: [] }],
      params: IdParams,
      response: { 204: Type.Null(), ...errors(400, 401, 404) }
    },
    preValidation: app.authenticate
  }, async (request, reply) => {
    const { userId, sessionId } = request.principal!
    if (!await passkeys.remove(request.params.id, userId)) throw new PasskeyNotFound()
    app.audit.record(request, 'passkey_deleted', { userId, sessionId, detail: { passkeyId: request.params.id } })
    return reply.code(204).send(null)
  })
}

export default passkeyRoutes
