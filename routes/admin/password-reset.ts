/** POST /api/admin/users/:user/password-reset: an administrator sends a user a reset link. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { parseUserSelector, type UserAdmin } from '../../src/admin/users.js'
import { sendResetMail } from '../../src/auth/password-reset.js'
import { MailDisabled, NoEmail, UserDisabled, UserNotFound } from '../../src/errors.js'
import { errors } from '../schemas.js'
import { UserParams } from './schemas.js'

const passwordReset: FastifyPluginAsyncTypebox<{ userAdmin: UserAdmin }> = async (app, { userAdmin }) => {
  const { config, repos, mail } = app

  app.post('/users/:user/password-reset', {
    schema: {
      summary: 'Mail a user a link to reset their password',
      description: 'Answers 202 with a fixed message. The same link and mail as a forgot-password request; the administrator never sees nor sets the password. No per-account limit; the audit event names the administrator. 409 NO_EMAIL for an account without an address, 409 USER_DISABLED for a disabled one; 503 MAIL_DISABLED when the service sends no mail.',
      tags: ['admin'],
      security: [{ bearerAuth: [] }],
      params: UserParams,
      response: { 202: Type.Object({ message: Type.String() }), ...errors(400, 401, 403, 404, 409, 503) }
    }
  }, async (request, reply) => {
    if (!mail.enabled) throw new MailDisabled()
    const selector = parseUserSelector(request.params.user)
    const target = selector === null ? null : await userAdmin.find(selector)
    if (target === null) throw new UserNotFound()
    const now = new Date()
    const by = request.principal!.userId
    const { outcome } = await sendResetMail({ repos, ttlSeconds: config.passwordReset.ttl, linkBase: config.mail.linkBase, enqueue: mail.enqueue }, target.id, now, {
      limit: null,
      audit: () => { app.audit.recordNow(request, 'password_reset_triggered', { userId: target.id, detail: { by } }, now) }
    })
    switch (outcome) {
      case 'issued': break
      case 'no_email': throw new NoEmail()
      case 'disabled': throw new UserDisabled()
      default: throw new UserNotFound()
    }
    request.log.info({ userId: target.id, by }, 'password reset mail sent by an administrator')
    return reply.code(202).send({ message: 'A link to reset the password was mailed to the user' })
  })
}

export default passwordReset
