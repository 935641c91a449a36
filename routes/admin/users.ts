/** /api/admin/users and /api/admin/sessions: the same user operations as the admin CLI. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import type { User } from '../../db/repositories/users.js'
import { Type } from 'typebox'
import { ADMIN_ROLE, parseUserSelector, type RecordEvent, type UserAdmin } from '../../src/admin/users.js'
import { deleteAccount } from '../../src/auth/account-deletion.js'
import {
  AdminSelfLockout, InvalidRoles, InvalidUsername, SessionNotFound, UserNotFound, UsernameTaken, WeakPassword
} from '../../src/errors.js'
import { PasswordInput, UsernameInput, errors } from '../schemas.js'
import { AdminSessionSchema, AdminUserSchema, RolesInput, UserParams, adminSessionView, adminUserView } from './schemas.js'

const CreateUserBody = Type.Object({
  username: UsernameInput,
  password: PasswordInput,
  roles: Type.Optional(RolesInput)
}, { additionalProperties: false })

// Query strings arrive as strings (the app does not coerce types): numbers are digit strings.
const ListQuery = Type.Object({
  limit: Type.Optional(Type.String({ pattern: '^(?:[1-9][0-9]?|[1-4][0-9]{2}|500)$', description: '1 to 500 (default 100)' })),
  offset: Type.Optional(Type.String({ pattern: '^[0-9]{1,9}$', description: 'Users to skip (default 0)' }))
}, { additionalProperties: false })

const security = [{ bearerAuth: [] }]
const tags = ['admin']

const users: FastifyPluginAsyncTypebox<{ userAdmin: UserAdmin }> = async (app, { userAdmin }) => {
  /** Audit events of an admin action carry who acted. */
  const recorder = (request: FastifyRequest): RecordEvent => (type, fields) => {
    app.audit.record(request, type, { ...fields, detail: { ...fields.detail, by: request.principal!.userId } })
  }

  /** The user `:user` names, or 404; the schema has already refused a bare or malformed selector. */
  const findTarget = async (raw: string): Promise<User> => {
    const selector = parseUserSelector(raw)
    const user = selector === null ? null : await userAdmin.find(selector)
    if (user === null) throw new UserNotFound()
    return user
  }

  app.get('/users', {
    schema: {
      summary: 'List users',
      description: 'In the order they registered; page with `limit` and `offset`.',
      tags,
      security,
      querystring: ListQuery,
      response: { 200: Type.Array(AdminUserSchema), ...errors(400, 401, 403) }
    }
  }, async (request) => {
    const rows = await userAdmin.list({ limit: Number(request.query.limit ?? 100), offset: Number(request.query.offset ?? 0) })
    return rows.map(adminUserView)
  })

  app.post('/users', {
    schema: {
      summary: 'Create a user with roles',
      description: 'Same username and password rules as registration; works also when ALLOW_REGISTRATION=false. Roles default to `["user"]`.',
      tags,
      security,
      body: CreateUserBody,
      response: { 201: AdminUserSchema, ...errors(400, 401, 403, 409, 415) }
    }
  }, async (request, reply) => {
    const { username, password, roles } = request.body
    const result = await userAdmin.create({ username, password, roles: roles ?? ['user'] }, new Date(), recorder(request))
    if (!result.ok) {
      switch (result.reason) {
        case 'invalid_username': throw new InvalidUsername(result.message)
        case 'weak_password': throw new WeakPassword(result.message)
        case 'invalid_roles': throw new InvalidRoles(result.message)
        case 'taken': throw new UsernameTaken()
      }
    }
    return reply.code(201).send(adminUserView(result.user))
  })

  app.get('/users/:user', {
    schema: {
      summary: 'One user, by id or by username',
      tags,
      security,
      params: UserParams,
      response: { 200: AdminUserSchema, ...errors(400, 401, 403, 404) }
    }
  }, async (request) => {
    return adminUserView(await findTarget(request.params.user))
  })

  for (const action of ['disable', 'enable'] as const) {
    app.post(`/users/:user/${action}`, {
      schema: {
        summary: action === 'disable' ? 'Disable a user and end all their sessions' : 'Enable a disabled user',
        description: action === 'disable'
          ? 'The user can no longer log in or refresh, and every session ends at once. An administrator cannot disable their own account (409).'
          : 'The user can log in again; ended sessions stay ended.',
        tags,
        security,
        params: UserParams,
        response: { 200: AdminUserSchema, ...errors(400, 401, 403, 404, ...(action === 'disable' ? [409] : [])) }
      }
    }, async (request) => {
      const target = await findTarget(request.params.user)
      if (action === 'disable' && target.id === request.principal!.userId) throw new AdminSelfLockout()
      const result = await userAdmin.setDisabled(target.id, action === 'disable', new Date(), recorder(request))
      if (result === null) throw new UserNotFound()
      request.log.info({ userId: target.id, endedSessions: result.endedSessions }, `user ${action}d`)
      return adminUserView(result.user)
    })
  }

  app.delete('/users/:user', {
    schema: {
      summary: 'Delete a user',
      description: 'As DELETE /api/auth/me by the user: the account, its sessions and mailed tokens go, its audit events lose their personal data, and the `account_deleted` tombstone names the administrator; the address, if any, gets a notice. An administrator deletes their own account with DELETE /api/auth/me (409 here).',
      tags,
      security,
      params: UserParams,
      response: { 204: Type.Null(), ...errors(400, 401, 403, 404, 409) }
    }
  }, async (request, reply) => {
    const target = await findTarget(request.params.user)
    const adminId = request.principal!.userId
    if (target.id === adminId) throw new AdminSelfLockout()
    const deleted = await deleteAccount({
      repos: app.repos,
      notify: app.mail.enabled ? (to, at) => { app.mail.enqueue('account_deleted', to, {}, at) } : null
    }, { userId: target.id, epoch: null, by: { admin: adminId }, requestId: request.id, now: new Date() })
    if (!deleted) throw new UserNotFound()
    request.log.info({ userId: target.id, by: adminId }, 'user deleted by an administrator')
    return reply.code(204).send(null)
  })

  app.put('/users/:user/roles', {
    schema: {
      summary: 'Replace a user\'s roles',
      description: 'Takes effect at once on this service; access tokens already issued carry the old roles until they expire (ACCESS_TOKEN_TTL), new ones (next refresh) the new roles. An administrator cannot remove their own admin role (409).',
      tags,
      security,
      params: UserParams,
      body: Type.Object({ roles: RolesInput }, { additionalProperties: false }),
      response: { 200: AdminUserSchema, ...errors(400, 401, 403, 404, 409, 415) }
    }
  }, async (request) => {
    const target = await findTarget(request.params.user)
    const roles = [...new Set(request.body.roles)]
    if (target.id === request.principal!.userId && !roles.includes(ADMIN_ROLE)) throw new AdminSelfLockout()
    const result = await userAdmin.setRoles(target.id, roles, new Date(), recorder(request))
    if (result === null) throw new UserNotFound()
    return adminUserView(result.user)
  })

  app.get('/users/:user/sessions', {
    schema: {
      summary: 'A user\'s live sessions',
      tags,
      security,
      params: UserParams,
      response: { 200: Type.Array(AdminSessionSchema), ...errors(400, 401, 403, 404) }
    }
  }, async (request) => {
    const target = await findTarget(request.params.user)
    return (await userAdmin.listSessions(target.id, new Date())).map(adminSessionView)
  })

  app.delete('/users/:user/sessions', {
    schema: {
      summary: 'End every session of a user',
      tags,
      security,
      params: UserParams,
      response: { 200: Type.Object({ ended: Type.Integer({ description: 'How many sessions were ended' }) }), ...errors(400, 401, 403, 404) }
    }
  }, async (request) => {
    const target = await findTarget(request.params.user)
    return { ended: await userAdmin.revokeAllSessions(target.id, new Date(), recorder(request)) }
  })

  app.delete('/sessions/:id', {
    schema: {
      summary: 'End one session of any user',
      tags,
      security,
      params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
      response: { 204: Type.Null(), ...errors(400, 401, 403, 404) }
    }
  }, async (request, reply) => {
    const ended = await userAdmin.revokeSession(request.params.id, new Date(), recorder(request))
    if (ended === null) throw new SessionNotFound()
    return reply.code(204).send(null)
  })
}

export default users
