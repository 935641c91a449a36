/**
 * The only file that knows how the refresh token travels: the cookie's name and flags, body
 * mode, and the cross-site check that guards every cookie-authenticated request.
 *
 * Cookie: `HttpOnly` (no script can read it), `Secure`, `SameSite` (Strict by default),
 * `Path=/api/auth` (sent only to the auth endpoints), `Max-Age` = refresh TTL capped by what
 * remains of the session.
 *
 * A browser attaches the cookie on its own, so a cookie-mode request (login in cookie mode,
 * refresh or logout without a body token) must prove that it comes from one of our pages
 * before anything changes (`checkOrigin`, 403 CROSS_SITE_REQUEST otherwise):
 *
 * 1. `Origin`, when present, must be PUBLIC_URL's origin or one of CORS_ORIGINS. Every current
 *    browser sends it on every POST, same-origin or not; `Origin: null` (sandboxed frames,
 *    file: pages, privacy redirects) is never ours.
 * 2. `Sec-Fetch-Site`, when present (Fetch Metadata, sent by current browsers and never
 *    settable by a page): `same-origin` is accepted; any other value (`same-site`,
 *    `cross-site`, `none`) is accepted only together with an allowlisted `Origin`. This stops
 *    a request that hides its Origin (some extensions and proxies strip it) from another site,
 *    and a page on a sibling subdomain or another port of the same host, which SameSite does
 *    not stop (ports and subdomains are the same site).
 * 3. Neither header: only a very old browser, a privacy tool that strips both, or a
 *    non-browser client (curl, a server) sends neither. If the request carries the refresh
 *    cookie it is accepted only when it is provably same-origin: a `Referer` whose origin is
 *    allowlisted (a page cannot forge Referer, and a stripped one proves nothing). A request
 *    without the cookie has nothing for a forger to ride on and is let through, so a
 *    non-browser client can still log in; to refresh with the cookie it must send
 *    `Origin: <PUBLIC_URL's origin>` (or use body mode, which needs no cookie at all).
 * 4. With `REFRESH_COOKIE_SAMESITE=None` the browser sends the cookie on requests from any site,
 *    so one more proof is required: the custom header `X-Auth-Request: 1`. No form and no
 *    "simple" cross-origin fetch can carry a custom header; a page on another origin must ask
 *    first (CORS preflight), which only CORS_ORIGINS pass.
 *
 * Body mode (`{ "refreshToken": ... }` in the request, `refreshToken` in the response) sets and
 * reads no cookie and needs none of this: the token in the body is the proof. A body token wins
 * over any cookie.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Config } from '../../src/config.js'
import { CrossSiteRequest } from '../../src/errors.js'
import type { TokenResponse } from '../schemas.js'

export type Mode = 'cookie' | 'body'
export const COOKIE_PATH = '/api/auth'
/** The header a cookie-mode request must carry when the cookie is `SameSite=None`. */
export const CUSTOM_HEADER = 'x-auth-request'

function originOf (url: string): string | undefined {
  try {
    return new URL(url).origin
  } catch {
    return undefined
  }
}

export function createRefreshTransport (config: Config) {
  const { cookieName, cookieSameSite } = config.refresh
  const allowedOrigins = new Set([config.publicOrigin, ...config.corsOrigins])
  const sameSite = cookieSameSite.toLowerCase() as 'strict' | 'lax' | 'none'
  const requireCustomHeader = sameSite === 'none'

  const allowedList = [...allowedOrigins].join(', ')
  const fix = `cookie mode accepts ${allowedList}; open the app there, or add its origin to CORS_ORIGINS (or set PUBLIC_URL to the address users open)`
  /** An origin as received, for the message: a header of at most a URL's usual length, quoted. */
  const shown = (value: string): string => JSON.stringify(value.length > 200 ? `${value.slice(0, 200)}…` : value)

  /**
   * Why a cookie-mode request is refused, or null when it may go on: a short reason for the log,
   * and the 403's message, which says which origin arrived, which are allowed, and the settings
   * that decide it (the allowed origins are no secret: they are the service's own pages).
   */
  function crossSiteReason (request: FastifyRequest): { reason: string, message: string } | null {
    const { origin, referer } = request.headers
    const fetchSite = request.headers['sec-fetch-site']
    const originAllowed = origin !== undefined && allowedOrigins.has(origin)
    if (origin !== undefined && !originAllowed) {
      return { reason: 'origin not allowed', message: `the request came from origin ${shown(origin)}, which is not allowed; ${fix}` }
    }
    if (fetchSite !== undefined && fetchSite !== 'same-origin' && !originAllowed) {
      return {
        reason: `sec-fetch-site ${String(fetchSite)} without an allowed origin`,
        message: `the request came from another site (Sec-Fetch-Site: ${shown(String(fetchSite))}) without an allowed Origin header; ${fix}`
      }
    }
    if (origin === undefined && fetchSite === undefined && request.cookies[cookieName] !== undefined) {
      const refererOrigin = referer === undefined ? undefined : originOf(referer)
      if (refererOrigin === undefined || !allowedOrigins.has(refererOrigin)) {
        return {
          reason: 'cookie without origin, sec-fetch-site or allowed referer',
          message: `the refresh cookie came without an Origin, Sec-Fetch-Site or allowed Referer header${refererOrigin === undefined ? '' : ` (Referer origin ${shown(refererOrigin)})`}; ${fix}`
        }
      }
    }
    if (requireCustomHeader && request.headers[CUSTOM_HEADER] !== '1') {
      return { reason: `SameSite=None and no ${CUSTOM_HEADER} header`, message: 'with REFRESH_COOKIE_SAMESITE=None a cookie-mode request must carry the header X-Auth-Request: 1' }
    }
    return null
  }

  /** Refuses a cookie-mode request that is not provably from one of our origins (see above). */
  function checkOrigin (request: FastifyRequest): void {
    const refusal = crossSiteReason(request)
    if (refusal === null) return
    request.log.info({ reason: refusal.reason, origin: request.headers.origin ?? null, secFetchSite: request.headers['sec-fetch-site'] ?? null }, 'cross-site request refused')
    throw new CrossSiteRequest(refusal.message)
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
        // Always Secure; browsers treat http://localhost and http://127.0.0.1 as secure
        // contexts, so local development over plain http works too.
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
