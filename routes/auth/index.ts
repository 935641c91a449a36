/** Everything under /api/auth. Responses here are personal: none may be stored by a cache. */
import type { FastifyPluginAsync } from 'fastify'
import account from './account.js'
import passkeys from './passkeys.js'
import mfa from './mfa.js'
import emailVerification from './email-verification.js'
import passwordReset from './password-reset.js'
import accountDeletion from './account-deletion.js'
import emailChange from './email-change.js'
import { createRefreshTransport } from './refresh-transport.js'
import sessionList from './session-list.js'
import tokens from './tokens.js'

const auth: FastifyPluginAsync = async (app) => {
  app.addHook('onSend', async (_request, reply) => {
    reply.header('cache-control', 'no-store')
  })
  const transport = createRefreshTransport(app.config)
  await app.register(account)
  await app.register(emailVerification)
  await app.register(passwordReset)
  await app.register(emailChange)
  await app.register(accountDeletion)
  await app.register(tokens, { transport })
  await app.register(sessionList)
  await app.register(passkeys, { transport })
  await app.register(mfa, { transport })
}

export default auth
