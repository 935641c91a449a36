/** DELETE /me: the owner deletes the account (src/auth/account-deletion.ts says what goes and what stays). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { deleteAccount, recentlyAuthenticated } from '../../src/auth/account-deletion.js'
import { AccessTokenInvalid, ReauthenticationRequired, SessionEnded } from '../../src/errors.js'
import { PasswordInput, errors } from '../schemas.js'
import { checkCurrentPassword } from './current-password.js'
import { routeLimit } from './limits.js'

const DeleteBody = Type.Object({ password: Type.Optional(PasswordInput) }, { additionalProperties: false })

const accountDeletion: FastifyPluginAsyncTypebox = async (app) => {
  const { config, repos } = app

  app.delete('/me', {
    schema: {
      summary: 'Delete the caller\'s account',
      description: 'The account, its sessions and mailed tokens are deleted, personal data is removed from its audit events and an `account_deleted` tombstone event is kept (user id, time, who); the address, if any, gets a notice. The username and the address can be registered again. `password` is the current password (a wrong one answers 403 INVALID_CURRENT_PASSWORD and counts like a failed login). Without it, an access token whose `auth_time` is at most ACCOUNT_DELETE_RECENT_LOGIN old will do; otherwise 403 REAUTHENTICATION_REQUIRED. Access tokens of the account stop working here at once (401).',
      tags: ['account'],
      security: [{ bearerAuth: [] }],
      body: DeleteBody,
      response: { 204: Type.Null(), ...errors(400, 401, 403, 415, 429) }
    },
    config: { rateLimit: routeLimit(config, config.rateLimit.login) },
    preValidation: app.authenticate
  }, async (request, reply) => {
    const now = new Date()
    const { userId, claims } = request.principal!
    let epoch: number | null = null
    if (request.body.password !== undefined) {
      const user = await repos.users.findById(userId)
      if (user === null) throw new AccessTokenInvalid()
      await checkCurrentPassword(app, request, reply, user, request.body.password, now)
      epoch = user.credentialEpoch
    } else if (!recentlyAuthenticated(claims, now, config.accountDeletion.recentLogin)) {
      throw new ReauthenticationRequired()
    }
    const deleted = await deleteAccount({
      repos,
      notify: app.mail.enabled ? (to, at) => { app.mail.enqueue('account_deleted', to, {}, at) } : null
    }, { userId, epoch, by: 'self', requestId: request.id, now })
    // Not deleted: the password check was overtaken by a password change, logout-all or a
    // disable (the stamp moved), or the account is already gone; either way this session has ended.
    if (!deleted) throw new SessionEnded()
    request.log.info({ userId }, 'account deleted by its owner')
    return reply.code(204).send(null)
  })
}

export default accountDeletion
