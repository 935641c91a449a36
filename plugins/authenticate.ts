/**
 * `app.authenticate`, the one Bearer check every authenticated route uses: the access token is
 * verified by @fastify/jwt with the rules of src/keys/access-tokens.ts, then its session (`sid`)
 * is looked up on every request, so a logout, a disabled account or a role change takes effect
 * at once. The principal it finds is `request.principal`.
 */
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { SessionEnded } from '../src/errors.js'
import { bearerToken, verificationError, verifiedClaims, type AccessClaims } from '../src/keys/access-tokens.js'
import type { Authenticate } from '../packages/verifier/src/index.js'

export interface Principal {
  userId: string
  username: string
  sessionId: string
  roles: string[]
  /** When the account was created; read with the session, so /me needs no second query. */
  createdAt: Date
  /** The account's address (null without one) and whether it is verified, read with the session too. */
  email: string | null
  emailVerified: boolean
  claims: AccessClaims
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null
  }
}

export default fp(async function authenticatePlugin (app) {
  app.decorateRequest('principal', null)

  /**
   * Routes use it as a `preValidation` hook, not `onRequest`: the rate limiter runs in onRequest
   * after a route's own onRequest hooks, so an onRequest check would refuse floods of bad tokens
   * before the limiter ever counted them.
   */
  const authenticate: Authenticate = async function authenticate (request: FastifyRequest): Promise<void> {
    // The missing-header and malformed answers come before any verification work.
    bearerToken(request)
    let claims: AccessClaims
    try {
      claims = verifiedClaims(await request.jwtVerify<Record<string, unknown>>())
    } catch (err) {
      throw verificationError(err)
    }
    const live = await app.repos.sessions.findLive(claims.sid, new Date())
    if (live === null || live.user.id !== claims.sub || live.user.disabled) throw new SessionEnded()
    request.principal = {
      userId: live.user.id,
      username: live.user.username,
      sessionId: claims.sid,
      roles: live.user.roles,
      createdAt: live.user.createdAt,
      email: live.user.email,
      emailVerified: live.user.emailVerified === true,
      claims
    }
  }
  app.decorate('authenticate', authenticate)
}, { name: 'authenticate', fastify: '5.x', dependencies: ['db', 'jwt'] })
