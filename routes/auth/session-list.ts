/** The caller's live sessions, and ending one of them. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { SessionNotFound } from '../../src/errors.js'
import { errors } from '../schemas.js'

const SessionSchema = Type.Object({
  id: Type.String({ description: 'The `sid` claim of the access tokens issued for this session' }),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.String({ format: 'date-time', description: 'When the session ends at the latest (its absolute lifetime)' }),
  userAgent: Type.Union([Type.String(), Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  current: Type.Boolean({ description: 'True for the session of the calling access token' })
}, { $id: 'Session' })

const sessionList: FastifyPluginAsyncTypebox = async (app) => {
  const { repos } = app
  // preValidation, not onRequest: the rate limiter's onRequest hook must count a request before
  // authentication can refuse it (a route's own onRequest hooks run before the limiter's).
  app.addHook('preValidation', app.authenticate)

  app.get('/sessions', {
    schema: {
      summary: 'List the caller\'s live sessions',
      tags: ['sessions'],
      security: [{ bearerAuth: [] }],
      response: { 200: Type.Array(SessionSchema), ...errors(401) }
    }
  }, async (request) => {
    const { userId, sessionId } = request.principal!
    const rows = await repos.sessions.listLive(userId, new Date())
    return rows.map((s) => ({
      id: s.id,
      createdAt: s.createdAt.toISOString(),
      lastUsedAt: s.lastUsedAt.toISOString(),
      expiresAt: s.expiresAt.toISOString(),
      userAgent: s.userAgent,
      ip: s.ip,
      current: s.id === sessionId
    }))
  })

  app.delete('/sessions/:id', {
    schema: {
      summary: 'End one of the caller\'s sessions',
      description: 'The current session may be ended too. 404 for an unknown session, one already ended, or another user\'s.',
      tags: ['sessions'],
      security: [{ bearerAuth: [] }],
      params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
      response: { 204: Type.Null(), ...errors(400, 401, 404) }
    }
  }, async (request, reply) => {
    const { userId } = request.principal!
    const ended = await repos.sessions.revoke(request.params.id, 'deleted', new Date(), userId)
    if (!ended) throw new SessionNotFound()
    request.log.info({ userId, sessionId: request.params.id }, 'session deleted')
    app.audit.record(request, 'session_revoked', { userId, sessionId: request.params.id, detail: { reason: 'deleted', by: userId } })
    return reply.code(204).send(null)
  })
}

export default sessionList
