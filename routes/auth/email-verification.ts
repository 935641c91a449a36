/**
 * E-mail verification: asking for a verification mail (Bearer), and spending the mailed token
 * (no authentication: the token is the proof). The link in the mail leads to a page
 * (routes/account-pages.ts, or the app's at APP_URL) whose button sends the POST; no GET spends
 * a token. docs/accounts.md describes the flow.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { hashAccountToken, newAccountToken } from '../../src/auth/account-tokens.js'
import { AccessTokenInvalid, AccountTokenInvalid, EmailAlreadyVerified, MailDisabled, NoEmail, RateLimited } from '../../src/errors.js'
import { accountLink } from '../../src/mail/links.js'
import { errors } from '../schemas.js'
import { routeLimit } from './limits.js'

const AccountTokenInput = Type.String({ minLength: 1, maxLength: 256, description: 'The `token` of the mailed link' })
const VerifyBody = Type.Object({ token: AccountTokenInput }, { additionalProperties: false })

const emailVerification: FastifyPluginAsyncTypebox = async (app) => {
  const { config, repos } = app
  const { emailVerificationPerAccount: perAccountLimit } = config.rateLimit
  // Per account, besides the route's per-address limit: one account cannot have its owner's
  // mailbox flooded from many addresses. Counted where the per-address limits are (Redis with
  // REDIS_URL, shared by every instance; else this instance's memory).
  const perAccount = config.rateLimit.enabled
    ? app.createRateLimit({
      max: perAccountLimit.max,
      timeWindow: perAccountLimit.windowSeconds * 1000,
      keyGenerator: (request) => `email-verification:${request.principal!.userId}`
    })
    : null

  app.post('/email/verification', {
    schema: {
      summary: 'Send a verification mail to the caller\'s address',
      description: 'Issues a one-time link to the account\'s current address (valid EMAIL_VERIFICATION_TTL, default 24 h; a newer link voids the older) and queues the mail: 202 with no body. 409 NO_EMAIL for an account without an address, 409 EMAIL_ALREADY_VERIFIED once it is verified, 503 MAIL_DISABLED without MAIL_TRANSPORT. Limited per account (RATE_LIMIT_EMAIL_VERIFICATION_PER_ACCOUNT, default 3 per hour) and per client address (RATE_LIMIT_EMAIL_VERIFICATION).',
      tags: ['account'],
      security: [{ bearerAuth: [] }],
      response: { 202: Type.Null({ description: 'No body: the mail is queued' }), ...errors(401, 409, 429, 503) }
    },
    config: { rateLimit: routeLimit(config, config.rateLimit.emailVerification) },
    preValidation: app.authenticate
  }, async (request, reply) => {
    if (!app.mail.enabled) throw new MailDisabled()
    const { userId, sessionId } = request.principal!
    const user = await repos.users.findById(userId)
    if (user === null) throw new AccessTokenInvalid()
    const address = user.email
    if (address === null) throw new NoEmail()
    if (user.emailVerified) throw new EmailAlreadyVerified()
    if (perAccount !== null) {
      const limit = await perAccount(request)
      if (!limit.isAllowed && limit.isExceeded) {
        reply.header('retry-after', limit.ttlInSeconds)
        throw new RateLimited(String(limit.ttlInSeconds))
      }
    }

    const now = new Date()
    const { token, tokenHash } = newAccountToken()
    await repos.accountTokens.issue({
      tokenHash,
      userId,
      purpose: 'verify_email',
      email: address,
      // A verification token does not depend on the password; the stamp is kept for the
      // table's contract only.
      passwordStamp: now,
      now,
      expiresAt: new Date(now.getTime() + config.emailVerification.ttl * 1000)
    }, () => {
      app.mail.enqueue('verify_email', address, { link: accountLink(config.mail.linkBase, 'verifyEmail', token) }, now)
      app.audit.recordNow(request, 'email_verification_sent', { userId, sessionId }, now)
    })
    request.log.info({ userId }, 'verification mail queued')
    // No body at all (`send(null)` would serialize the JSON `null` for a 202).
    return reply.code(202).send(undefined as unknown as null)
  })

  app.post('/email/verify', {
    schema: {
      summary: 'Verify an e-mail address with the mailed token',
      description: 'Spends the token of a verification link and marks the address verified: 204. Access tokens issued afterwards (login, refresh) carry `email_verified: true`. An unknown, spent or expired token, or one issued for an address the account no longer has, answers 400 ACCOUNT_TOKEN_INVALID.',
      tags: ['account'],
      body: VerifyBody,
      response: { 204: Type.Null(), ...errors(400, 415, 429) }
    },
    config: { rateLimit: routeLimit(config, config.rateLimit.emailVerify) }
  }, async (request, reply) => {
    const tokenHash = hashAccountToken(request.body.token)
    if (tokenHash === null) throw new AccountTokenInvalid()
    const now = new Date()
    const outcome = await repos.emailVerification.verify(tokenHash, now, (userId) => {
      app.audit.recordNow(request, 'email_verified', { userId }, now)
    })
    if (!outcome.verified) {
      request.log.info('verification token refused')
      throw new AccountTokenInvalid()
    }
    request.log.info({ userId: outcome.userId }, 'e-mail address verified')
    return reply.code(204).send(null)
  })
}

export default emailVerification
