/**
 * Everything under /api/admin: user, session and audit-log administration for callers whose
 * access token belongs to a user with the `admin` role. Roles are read from the database on
 * every request (app.authenticate), so removing the role takes effect at once here.
 * Non-admins get 403 FORBIDDEN; nothing here is cached.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { Forbidden } from '../../src/errors.js'
import { ADMIN_ROLE, createUserAdmin } from '../../src/admin/users.js'
import audit from './audit.js'
import passwordReset from './password-reset.js'
import users from './users.js'

const admin: FastifyPluginAsync = async (app) => {
  // preValidation, not onRequest: the rate limiter counts the request before auth can refuse it.
  app.addHook('preValidation', app.authenticate)
  app.addHook('preValidation', async (request: FastifyRequest) => {
    if (!request.principal!.roles.includes(ADMIN_ROLE)) throw new Forbidden()
  })
  app.addHook('onSend', async (_request, reply) => {
    reply.header('cache-control', 'no-store')
  })
  const userAdmin = createUserAdmin(app)
  await app.register(users, { userAdmin })
  await app.register(passwordReset, { userAdmin })
  await app.register(audit)
}

export default admin
