/**
 * The only file that knows how the refresh token travels: the cookie's name and flags, body
 * mode, and the Origin check that guards every cookie-authenticated request.
 *
 * Cookie: `HttpOnly` (no script can read it), `Secure`, `SameSite` (Strict by default),
 * `Path=/api/auth` (sent only to the auth endpoints), `Max-Age` = refresh TTL capped by what
 * remains of the session. A cookie is sent by the browser on its own, so a cookie-mode request
 * whose `Origin` is present and not ours (PUBLIC_URL or CORS_ORIGINS) is refused before
 * anything changes: that is a cross-site request forgery attempt.
 *
 * Body mode (`{ "refreshToken": ... }` in the request, `refreshToken` in the response) sets and
 * reads no cookie. A body token wins over any cookie.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Config } from '../../src/config.js'
import { CrossSiteRequest } from '../../src/errors.js'
import type { TokenResponse } from '../schemas.js'

export type Mode = 'cookie' | 'body'
export const COOKIE_PATH = '/api/auth'

export function createRefreshTransport (config: Config) {
  const { cookieName, cookieSameSite } = config.refresh
  const allowedOrigins = new Set([config.publicOrigin, ...config.corsOrigins])
  const sameSite = cookieSameSite.toLowerCase() as 'strict' | 'lax' | 'none'

  function checkOrigin (request: FastifyRequest): void {
    const origin = request.headers.origin
    if (origin !== undefined && !allowedOrigins.has(origin)) throw new CrossSiteRequest()
  }

  return {
    checkOrigin,

    /** The token a refresh or logout presents, and the mode it came in. */
    read (request: FastifyRequest): { token: string | undefined, mode: Mode } {
      const body = request.body as { refreshToken?: string } | undefined
      if (typeof body?.refreshToken === 'string') return { token: body.refreshToken, mode: 'body' }
      checkOrigin(request)
      return { token: request.cookies[cookieName], mode: 'cookie' }
    },

    /** The token response; in cookie mode the refresh token goes only into the cookie. */
    send (reply: FastifyReply, mode: Mode, tokens: { accessToken: string, expiresIn: number, refreshToken: string, refreshExpiresAt: Date }, now: Date): TokenResponse {
      reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
      const base = { accessToken: tokens.accessToken, tokenType: 'Bearer' as const, expiresIn: tokens.expiresIn }
      if (mode === 'body') return { ...base, refreshToken: tokens.refreshToken }
      reply.setCookie(cookieName, tokens.refreshToken, {
        httpOnly: true,
        secure: true,
        sameSite,
        path: COOKIE_PATH,
        maxAge: Math.max(0, Math.floor((tokens.refreshExpiresAt.getTime() - now.getTime()) / 1000))
      })
      return base
    },

    clear (reply: FastifyReply): void {
      reply.clearCookie(cookieName, { httpOnly: true, secure: true, sameSite, path: COOKIE_PATH })
    }
  }
}

export type RefreshTransport = ReturnType<typeof createRefreshTransport>
