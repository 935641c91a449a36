/** Register, me and password change. */
import { randomUUID } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { checkUsername, normalizeUsername, usernameFold, usernameKey } from '../../src/auth/credentials.js'
import { newAccountToken } from '../../src/auth/account-tokens.js'
import { checkEmail } from '../../src/auth/email.js'
import { ACCOUNT_PAGES, accountLink } from '../../src/mail/links.js'
import { EmailTakenError } from '../../db/repositories/users.js'
import {
  AccessTokenInvalid, EmailTaken, InvalidCurrentPassword, InvalidEmail, InvalidUsername, RateLimited, RegistrationDisabled, SessionEnded, UsernameTaken, WeakPassword
} from '../../src/errors.js'
import { EmailInput, PasswordInput, UserSchema, UsernameInput, errors, userView } from '../schemas.js'
import { routeLimit } from './limits.js'

const RegisterBody = Type.Object({ username: UsernameInput, password: PasswordInput, email: Type.Optional(EmailInput) }, { additionalProperties: false })
const PasswordBody = Type.Object({ currentPassword: PasswordInput, newPassword: PasswordInput }, { additionalProperties: false })

const account: FastifyPluginAsyncTypebox = async (app) => {
  const { config, repos, passwords, passwordPolicy, loginThrottle } = app

  app.post('/register', {
    schema: {
      summary: 'Create an account',
      description: 'With mail on, an `email` gets a verification mail (docs/accounts.md). With REQUIRE_EMAIL_VERIFICATION=true, `email` is required (400 INVALID_EMAIL without it), and an address that already has an account answers exactly as a new registration (201, a user view with a fresh id) while its owner is told by mail: nothing is created. Optional `email`: trimmed, NFC, domain lower-cased, at most 254 characters; unique by the whole address lower-cased (409 EMAIL_TAKEN, as a taken username). Usernames: 3 to 64 letters, digits and . _ - @ + after NFKC and trimming, in one script (digits and . _ - @ + go with any), not shaped like a user id (UUID). Unique by NFKC + full Unicode case folding; a name that looks like an existing one (Unicode TS #39 confusable skeleton) counts as taken (409, as a taken name). Passwords: PASSWORD_MIN_LENGTH to 256 characters, not on the common-password list, no composition rules.',
      tags: ['account'],
      body: RegisterBody,
      response: { 201: UserSchema, ...errors(400, 403, 409, 415, 429) }
    },
    config: { rateLimit: routeLimit(config, config.rateLimit.register) }
  }, async (request, reply) => {
    if (!config.allowRegistration) throw new RegistrationDisabled()
    const username = checkUsername(request.body.username)
    if (!username.ok) throw new InvalidUsername(username.message)
    if (request.body.email === undefined && config.emailVerification.required) throw new InvalidEmail('An e-mail address is required')
    const email = request.body.email === undefined ? null : checkEmail(request.body.email)
    if (email !== null && !email.ok) throw new InvalidEmail(email.message)
    const password = passwordPolicy.check(request.body.password)
    if (!password.ok) throw new WeakPassword(password.message)

    const now = new Date()
    // With mail on, a new address gets its verification link: token, account and mail commit together.
    const verification = email !== null && app.mail.enabled ? newAccountToken() : null
    const passwordHash = await passwords.hash(password.value)
    let user
    try {
      user = await repos.users.insert({
        id: randomUUID(),
        username: username.value,
        usernameKey: usernameKey(username.value),
        passwordHash,
        roles: ['user'],
        now,
        email: email === null ? null : { address: email.address, key: email.key },
        verification: verification === null ? null : { tokenHash: verification.tokenHash, expiresAt: new Date(now.getTime() + config.emailVerification.ttl * 1000) }
      }, verification === null
        ? undefined
        : (created) => { app.mail.enqueue('verify_email', created.email!, { link: accountLink(config.mail.linkBase, 'verifyEmail', verification.token) }, now) })
    } catch (err) {
      if (!(err instanceof EmailTakenError) || email === null) throw err
      if (!config.emailVerification.required) throw new EmailTaken()
      // Silent registration: the caller gets what a new registration answers (the password was
      // hashed all the same, a user view with a fresh random id); the address's owner gets a
      // mail instead. Nothing is created. No link token: the page offers to ask for a reset.
      const owner = await repos.users.findByEmailKey(email.key)
      if (owner?.email != null) {
        const ownerAddress = owner.email
        await repos.outbox.enqueueAlone(() => {
          app.mail.enqueue('account_exists', ownerAddress, { link: `${config.mail.linkBase}${ACCOUNT_PAGES.resetPassword}` }, now)
          app.audit.recordNow(request, 'register_address_taken', { userId: owner.id }, now)
        })
      }
      request.log.info({ ownerId: owner?.id ?? null }, 'registration with an address that has an account; owner notified')
      return reply.code(201).send(userView({ id: randomUUID(), username: username.value, roles: ['user'], createdAt: now, email: email.address, emailVerified: false }))
    }
    if (user === null) throw new UsernameTaken()
    request.log.info({ userId: user.id }, 'registered')
    app.audit.record(request, 'register', { userId: user.id, detail: { username: user.username } }, now)
    return reply.code(201).send(userView(user))
  })

  app.get('/me', {
    schema: {
      summary: 'The caller\'s account',
      tags: ['account'],
      security: [{ bearerAuth: [] }],
      response: { 200: UserSchema, ...errors(401) }
    },
    preValidation: app.authenticate
  }, async (request) => {
    // Everything shown is read with the session (app.authenticate): one query per /me.
    const { userId, username, roles, createdAt, email, emailVerified } = request.principal!
    return userView({ id: userId, username, roles, createdAt, email, emailVerified })
  })

  app.post('/password', {
    schema: {
      summary: 'Change the caller\'s password',
      description: 'Every other session of the user ends; the calling session stays. Wrong current passwords count in the per-account limit of failed logins; past it the answer is 429 and the calling session ends. A change that a concurrent password change, logout-all or disable overtook is refused with 401 (the calling session has ended).',
      tags: ['account'],
      security: [{ bearerAuth: [] }],
      body: PasswordBody,
      response: { 204: Type.Null(), ...errors(400, 401, 403, 415, 429) }
    },
    // Guessing the current password with a stolen access token is limited like login: per
    // address by this route limit, per account by the login throttle below.
    config: { rateLimit: routeLimit(config, config.rateLimit.login) },
    preValidation: app.authenticate
  }, async (request, reply) => {
    const now = new Date()
    const { userId, sessionId } = request.principal!
    const next = passwordPolicy.check(request.body.newPassword)
    if (!next.ok) throw new WeakPassword(next.message)
    const user = await repos.users.findById(userId)
    if (user === null) throw new AccessTokenInvalid()

    // A wrong current password is a guess at the account's password: it counts in the same
    // per-account limit as failed logins, reserved before hashing. Past the limit the session
    // that sent the guesses ends, so that a stolen access token cannot go on guessing.
    const key = usernameFold(normalizeUsername(user.username))
    const reservation = await loginThrottle.reserve(key, now)
    if (!reservation.ok) {
      await repos.sessions.revoke(sessionId, 'password_guessing', now)
      request.log.info({ userId, sessionId }, 'password change throttled; session ended')
      app.audit.record(request, 'session_revoked', { userId, sessionId, detail: { reason: 'password_guessing' } }, now)
      reply.header('retry-after', reservation.retryAfter)
      throw new RateLimited(String(reservation.retryAfter))
    }
    if (!await passwords.verify(user.passwordHash, request.body.currentPassword.normalize('NFKC'))) {
      await loginThrottle.release(key, now, 'failed')
      throw new InvalidCurrentPassword()
    }
    await loginThrottle.reset(key, now)

    // Committed only while the credential is the one just checked (users repository,
    // `changePassword`): otherwise a concurrent change, logout-all or disable has ended this
    // session, and the caller's proof of the password no longer holds.
    const result = await repos.users.changePassword({ id: userId, passwordHash: await passwords.hash(next.value), epoch: user.credentialEpoch, keepSessionId: sessionId, now })
    if (!result.changed) {
      request.log.info({ userId, sessionId }, 'password change overtaken; session ended')
      throw new SessionEnded()
    }
    request.log.info({ userId, endedSessions: result.endedSessions }, 'password changed')
    app.audit.record(request, 'password_changed', { userId, sessionId, detail: { endedSessions: result.endedSessions } }, now)
    return reply.code(204).send(null)
  })
}

export default account
