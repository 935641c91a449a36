/**
 * Changing the address: POST /email/change (Bearer) mails a confirmation link to the new
 * address; POST /email/confirm spends the link's token (a `change_email` token sets the new
 * address and mails the old one an undo link; an `undo_email_change` token restores the old
 * address and ends every session). The rules: src/auth/email-change.ts, docs/accounts.md.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { hashAccountToken, newAccountToken } from '../../src/auth/account-tokens.js'
import { checkEmail } from '../../src/auth/email.js'
import { takenAddressAnswer } from '../../src/auth/email-change.js'
import {
  AccessTokenInvalid, AccountTokenInvalid, EmailTaken, EmailUnchanged, InvalidEmail, MailDisabled, RateLimited
} from '../../src/errors.js'
import { accountLink } from '../../src/mail/links.js'
import { EmailInput, PasswordInput, errors } from '../schemas.js'
import { checkCurrentPassword } from './current-password.js'
import { routeLimit } from './limits.js'

const ChangeBody = Type.Object({ newEmail: EmailInput, password: PasswordInput }, { additionalProperties: false })
const ConfirmBody = Type.Object({
  token: Type.String({ minLength: 1, maxLength: 128, description: 'The `token` of the link mailed to the new address (confirm) or to the old one (undo)' })
}, { additionalProperties: false })

const emailChange: FastifyPluginAsyncTypebox = async (app) => {
  const { config, repos } = app
  const perAccount = app.createRateLimit({
    max: config.rateLimit.emailChangePerAccount.max,
    timeWindow: config.rateLimit.emailChangePerAccount.windowSeconds * 1000,
    keyGenerator: (request) => `email-change:${request.principal!.userId}`
  })

  app.post('/email/change', {
    schema: {
      summary: 'Ask to change the account\'s e-mail address',
      description: 'Mails a confirmation link to `newEmail` (valid EMAIL_CHANGE_TTL, default 24 h); the address changes only when the link\'s token is posted to /email/confirm. `password` is the current password: a wrong one answers 403 INVALID_CURRENT_PASSWORD and counts in the per-account limit of failed logins. `newEmail` is normalised and checked as at registration (400 INVALID_EMAIL); the current address answers 400 EMAIL_UNCHANGED, an address of another account 409 EMAIL_TAKEN. At most RATE_LIMIT_EMAIL_CHANGE_MAX requests per account per RATE_LIMIT_EMAIL_CHANGE_WINDOW (429). Without MAIL_TRANSPORT: 503 MAIL_DISABLED.',
      tags: ['account'],
      security: [{ bearerAuth: [] }],
      body: ChangeBody,
      response: { 202: Type.Null(), ...errors(400, 401, 403, 409, 415, 429, 503) }
    },
    config: { rateLimit: routeLimit(config, config.rateLimit.login) },
    preValidation: app.authenticate
  }, async (request, reply) => {
    if (!app.mail.enabled) throw new MailDisabled()
    const now = new Date()
    const { userId } = request.principal!
    const email = checkEmail(request.body.newEmail)
    if (!email.ok) throw new InvalidEmail(email.message)
    const user = await repos.users.findById(userId)
    if (user === null) throw new AccessTokenInvalid()
    await checkCurrentPassword(app, request, reply, user, request.body.password, now)

    if (user.email !== null && user.email.toLowerCase() === email.key) throw new EmailUnchanged()
    const holder = await repos.users.findByEmailKey(email.key)
    if (holder !== null && holder.id !== userId) {
      if (takenAddressAnswer(config) === 'refuse') throw new EmailTaken()
      return reply.code(202).send(null)
    }
    // Counted only for requests that send a mail: the limit protects the mailbox of the
    // address given, and password guesses have their own.
    const limited = await perAccount(request)
    if (!limited.isAllowed && limited.isExceeded) {
      reply.header('retry-after', limited.ttlInSeconds)
      throw new RateLimited(String(limited.ttlInSeconds))
    }

    const { token, tokenHash } = newAccountToken()
    await repos.accountTokens.issue({
      tokenHash,
      userId,
      purpose: 'change_email',
      email: email.address,
      passwordStamp: user.passwordChangedAt,
      now,
      expiresAt: new Date(now.getTime() + config.emailChange.ttl * 1000)
    }, () => {
      app.mail.enqueue('email_change_confirm', email.address, { link: accountLink(config.mail.linkBase, 'confirmEmail', token) }, now)
      app.audit.recordNow(request, 'email_change_requested', { userId, sessionId: request.principal!.sessionId, detail: { email: email.address } }, now)
    })
    request.log.info({ userId }, 'address change requested')
    return reply.code(202).send(null)
  })

  app.post('/email/confirm', {
    schema: {
      summary: 'Confirm an address change, or undo one',
      description: 'The token of a confirmation link (mailed to the new address) sets the new address, verified, and mails the old address a notice with an undo link (valid EMAIL_CHANGE_UNDO_TTL, default 7 days). The token of that undo link restores the old address, ends every session of the account and voids its other mailed tokens. The token\'s own purpose decides which; any other token, or one unknown, spent, expired or issued before the password last changed, answers 400 ACCOUNT_TOKEN_INVALID. An address that another account took meanwhile answers 409 EMAIL_TAKEN. Opening a link (GET) spends nothing; only this POST does.',
      tags: ['account'],
      body: ConfirmBody,
      response: { 204: Type.Null(), ...errors(400, 409, 415, 429, 503) }
    },
    config: { rateLimit: routeLimit(config, config.rateLimit.login) }
  }, async (request, reply) => {
    // Both outcomes mail a message (the notice, or none for an undo, but the undo then serves a
    // change that mailed one): without mail no change token can have been issued to spend.
    if (!app.mail.enabled) throw new MailDisabled()
    const now = new Date()
    const tokenHash = hashAccountToken(request.body.token)
    if (tokenHash === null) throw new AccountTokenInvalid()

    const change = await repos.accountTokens.find(tokenHash, 'change_email', now)
    if (change !== null) {
      const email = checkEmail(change.email ?? '')
      if (!email.ok) throw new AccountTokenInvalid()
      const undoToken = newAccountToken()
      const outcome = await repos.emailChange.confirm({
        tokenHash,
        userId: change.userId,
        email: { address: email.address, key: email.key },
        now,
        undo: { tokenHash: undoToken.tokenHash, expiresAt: new Date(now.getTime() + config.emailChange.undoTtl * 1000) }
      }, (previous) => {
        if (previous !== null) {
          app.mail.enqueue('email_change_notice', previous, { newEmail: email.address, link: accountLink(config.mail.linkBase, 'undoEmailChange', undoToken.token) }, now)
        }
        app.audit.recordNow(request, 'email_changed', { userId: change.userId, detail: { email: email.address, previousEmail: previous } }, now)
      })
      if (!outcome.ok) throw outcome.reason === 'taken' ? new EmailTaken() : new AccountTokenInvalid()
      request.log.info({ userId: change.userId }, 'address changed')
      return reply.code(204).send(null)
    }

    const undo = await repos.accountTokens.find(tokenHash, 'undo_email_change', now)
    if (undo !== null) {
      const email = checkEmail(undo.email ?? '')
      if (!email.ok) throw new AccountTokenInvalid()
      const outcome = await repos.emailChange.undo({ tokenHash, userId: undo.userId, email: { address: email.address, key: email.key }, now }, () => {
        app.audit.recordNow(request, 'email_change_undone', { userId: undo.userId, detail: { email: email.address } }, now)
      })
      if (!outcome.ok) throw outcome.reason === 'taken' ? new EmailTaken() : new AccountTokenInvalid()
      request.log.info({ userId: undo.userId }, 'address change undone; sessions ended')
      return reply.code(204).send(null)
    }
    throw new AccountTokenInvalid()
  })
}

export default emailChange
