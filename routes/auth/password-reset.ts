/** Forgot and reset password (src/auth/password-reset.ts has the rules; docs/accounts.md the flow). */
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { findResetAccount, resetPassword, sendResetMail } from '../../src/auth/password-reset.js'
import { normalizeUsername, usernameFold } from '../../src/auth/credentials.js'
import { AccountTokenInvalid, MailDisabled, ValidationFailed, WeakPassword } from '../../src/errors.js'
import { EmailInput, PasswordInput, UsernameInput, errors } from '../schemas.js'
import { routeLimit } from './limits.js'

// One of `email` and `username`: checked in the handler (400), which can say which is wanted.
const ForgotBody = Type.Object({
  email: Type.Optional(EmailInput),
  username: Type.Optional(UsernameInput)
}, { additionalProperties: false, description: 'The account, by its address or its username (one of them)' })

const ForgotAccepted = Type.Object({
  message: Type.String()
}, { description: 'The same body whatever the account: whether it exists, has an address, or was sent a link' })

/** The one answer of /password/forgot: it says nothing about the account. */
const FORGOT_ANSWER = { message: 'If the account exists and has an e-mail address, a link to reset its password is on its way' }

const ResetBody = Type.Object({
  token: Type.String({ minLength: 1, maxLength: 128, description: 'The token from the mailed link' }),
  newPassword: PasswordInput
}, { additionalProperties: false })

const passwordReset: FastifyPluginAsyncTypebox = async (app) => {
  const { config, repos, mail, passwords, passwordPolicy, loginThrottle } = app
  const settings = config.passwordReset

  app.post('/password/forgot', {
    schema: {
      summary: 'Ask for a password-reset link',
      description: 'Mails a link to reset the password to the address of the account named by `email` or `username`. Answers 202 with one fixed body, in the same time (at least PASSWORD_FORGOT_MIN_DURATION), whether or not the account exists, has an address, is disabled or has had RATE_LIMIT_PASSWORD_RESET_MAILS_PER_USER_MAX links in the window. The link works PASSWORD_RESET_TTL, once; a newer link voids it. 503 MAIL_DISABLED, whatever the body, when the service sends no mail.',
      tags: ['account'],
      body: ForgotBody,
      response: { 202: ForgotAccepted, ...errors(400, 503) }
    },
    config: { rateLimit: routeLimit(config, config.rateLimit.passwordForgot) },
    // Before the body is validated: without mail the answer is the same for every input.
    preValidation: async () => { if (!mail.enabled) throw new MailDisabled() }
  }, async (request, reply) => {
    const { email, username } = request.body
    if ((email === undefined) === (username === undefined)) throw new ValidationFailed('Give either email or username')
    // Every answer waits until the floor, so that the time shows nothing of what was done:
    // a lookup for an unknown name, or a lookup and a transaction with its mail for an account.
    const started = performance.now()
    try {
      const now = new Date()
      const user = await findResetAccount(repos, { email, username })
      const outcome = user === null
        ? 'no_account'
        : (await sendResetMail({ repos, ttlSeconds: settings.ttl, linkBase: config.mail.linkBase, enqueue: mail.enqueue }, user.id, now, {
            limit: config.rateLimit.passwordResetMailsPerUser,
            audit: () => { app.audit.recordNow(request, 'password_reset_requested', { userId: user.id, detail: { by: email === undefined ? 'username' : 'email' } }, now) }
          })).outcome
      // The outcome goes to the log for operators, never to the client.
      request.log.info({ userId: user?.id, outcome }, 'password reset requested')
    } finally {
      const elapsed = performance.now() - started
      if (elapsed > settings.forgotMinDurationMs) {
        request.log.warn({ ms: Math.round(elapsed) }, 'password forgot took longer than PASSWORD_FORGOT_MIN_DURATION: its time may tell accounts apart; raise the setting')
      }
      // Timers count whole milliseconds on a cached clock and may fire a little early: wait again until the floor has passed.
      for (let left = settings.forgotMinDurationMs - elapsed; left > 0; left = settings.forgotMinDurationMs - (performance.now() - started)) {
        await sleep(Math.ceil(left))
      }
    }
    return reply.code(202).send(FORGOT_ANSWER)
  })

  app.post('/password/reset', {
    schema: {
      summary: 'Set a new password with a reset link\'s token',
      description: 'Same password rules as registration (400 WEAK_PASSWORD, and the token stays usable). Sets the password, ends every session of the account and mails the owner that the password changed. An unknown, used, expired or void token (a newer link was sent, the password changed meanwhile, the account is disabled): 400 ACCOUNT_TOKEN_INVALID.',
      tags: ['account'],
      body: ResetBody,
      response: { 204: Type.Null(), ...errors(400) }
    },
    config: { rateLimit: routeLimit(config, config.rateLimit.passwordReset) }
  }, async (request, reply) => {
    const now = new Date()
    const result = await resetPassword({ repos, passwords, passwordPolicy, enqueue: mail.enabled ? mail.enqueue : null }, request.body, now, (done) => {
      app.audit.recordNow(request, 'password_reset', { userId: done.userId, detail: { endedSessions: done.endedSessions } }, now)
    })
    if (!result.ok) {
      if (result.reason === 'weak_password') throw new WeakPassword(result.message)
      throw new AccountTokenInvalid()
    }
    // Whoever was locked out by failed logins gets back in with the new password. The reset
    // has committed: a throttle that cannot be reached (Redis) only leaves the count as it was.
    try {
      await loginThrottle.reset(usernameFold(normalizeUsername(result.done.username)), now)
    } catch (err) {
      request.log.warn({ err, userId: result.done.userId }, 'failed logins not cleared after a password reset')
    }
    request.log.info({ userId: result.done.userId, endedSessions: result.done.endedSessions }, 'password reset')
    return reply.code(204).send(null)
  })
}

export default passwordReset
