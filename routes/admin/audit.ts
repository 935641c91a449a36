/** /api/admin/audit: the audit log, newest first, filtered by user or event type. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { AUDIT_EVENT_TYPES } from '../../db/repositories/audit.js'
import { errors } from '../schemas.js'

const AuditEventSchema = Type.Object({
  id: Type.Integer(),
  at: Type.String({ format: 'date-time' }),
  type: Type.String(),
  userId: Type.Union([Type.String(), Type.Null()]),
  sessionId: Type.Union([Type.String(), Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  userAgent: Type.Union([Type.String(), Type.Null()]),
  requestId: Type.Union([Type.String(), Type.Null()]),
  detail: Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()])
})

const AuditQuery = Type.Object({
  userId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  type: Type.Optional(Type.Union(AUDIT_EVENT_TYPES.map((t) => Type.Literal(t)))),
  // Query strings arrive as strings (the app does not coerce types): numbers are digit strings.
  before: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,15}$', description: 'Only events with an id below this one (the next page)' })),
  limit: Type.Optional(Type.String({ pattern: '^(?:[1-9][0-9]{0,2}|1000)$', description: '1 to 1000 (default 100)' }))
}, { additionalProperties: false })

const audit: FastifyPluginAsyncTypebox = async (app) => {
  const { repos } = app
  app.get('/audit', {
    schema: {
      summary: 'Security events, newest first',
      description: `Event types: ${AUDIT_EVENT_TYPES.join(', ')}. Never contains a password, token or hash.`,
      tags: ['admin'],
      security: [{ bearerAuth: [] }],
      querystring: AuditQuery,
      response: { 200: Type.Array(AuditEventSchema), ...errors(400, 401, 403) }
    }
  }, async (request) => {
    const { userId, type, before, limit } = request.query
    const rows = await repos.audit.list({ userId, type, beforeId: before === undefined ? undefined : Number(before), limit: Number(limit ?? 100) })
    return rows.map((e) => ({ ...e, at: e.at.toISOString() }))
  })
}

export default audit
