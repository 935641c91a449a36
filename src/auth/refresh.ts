/**
 * Refresh, as one use case: the token a client presents in, one outcome out. The route reads
 * the token from its transport and turns the outcome into a response; everything between
 * happens here, in this order:
 *
 * 1. No token: refused as missing; nothing else happens.
 * 2. The signing key is chosen before the token is spent: when no key can sign, the issuer
 *    throws (a 503) and the token stays unspent, or the client's retry would be taken for reuse
 *    and end the session.
 * 3. The token is rotated by the session manager's rules (session-manager.ts). A late reuse
 *    ends the session, and the `refresh_reuse_detected` audit event is written inside the
 *    transaction that ends it: the log never misses a revocation, nor tells of one that did
 *    not commit.
 * 4. Rotated (or answered within the reuse interval): a new access token for the session.
 *
 * Every outcome carries its metrics label; a refusal carries its coded error.
 */
import type { AuditEventType } from '../../db/repositories/audit.js'
import { RefreshTokenExpired, RefreshTokenInvalid, RefreshTokenMissing, SessionRevoked, TokenReused } from '../errors.js'
import type { Issued, RotateFailure, SessionManager } from './session-manager.js'

/** The `outcome` label of auth_refresh_total. */
export type RefreshMetricLabel = 'rotated' | 'reuse_interval' | 'reuse_detected' | 'expired' | 'revoked' | 'invalid' | 'missing'
export type RefreshFailure = RotateFailure | 'missing'

export interface AccessTokens { accessToken: string, expiresIn: number }

export interface RefreshDeps<Client> {
  sessionManager: Pick<SessionManager, 'rotate'>
  /** The signer of access tokens at `now`, its key chosen now; throws when no key can sign. */
  accessTokenIssuer: (now: Date) => (subject: { userId: string, sessionId: string, roles: string[], amr?: string[], authTime?: Date, emailVerified?: boolean | null }) => Promise<AccessTokens>
  /** Writes an audit event synchronously: called inside the transaction that ends a session. */
  recordAudit: (client: Client, type: AuditEventType, fields: { userId: string, sessionId: string, detail: Record<string, unknown> }, now: Date) => void
}

export type RefreshOutcome =
  | { ok: true, metricLabel: 'rotated' | 'reuse_interval', tokens: AccessTokens & Issued }
  | { ok: false, reason: RefreshFailure, metricLabel: RefreshMetricLabel, error: Error, sessionId?: string }

const refusals: Record<RefreshFailure, { metricLabel: RefreshMetricLabel, error: () => Error }> = {
  missing: { metricLabel: 'missing', error: () => new RefreshTokenMissing() },
  malformed: { metricLabel: 'invalid', error: () => new RefreshTokenInvalid() },
  unknown: { metricLabel: 'invalid', error: () => new RefreshTokenInvalid() },
  expired: { metricLabel: 'expired', error: () => new RefreshTokenExpired() },
  revoked: { metricLabel: 'revoked', error: () => new SessionRevoked() },
  reused: { metricLabel: 'reuse_detected', error: () => new TokenReused() }
}

const refused = (reason: RefreshFailure, sessionId?: string): RefreshOutcome =>
  ({ ok: false, reason, metricLabel: refusals[reason].metricLabel, error: refusals[reason].error(), sessionId })

/** `client` is whoever presented the token (the request): the audit event names its address. */
export async function refresh<Client> (deps: RefreshDeps<Client>, presented: string | undefined, now: Date, client: Client): Promise<RefreshOutcome> {
  if (presented === undefined) return refused('missing')
  const issueAccess = deps.accessTokenIssuer(now)
  const result = await deps.sessionManager.rotate(presented, now, (ended) => {
    deps.recordAudit(client, 'refresh_reuse_detected', { ...ended, detail: { sessionRevoked: true } }, now)
  })
  if (!result.ok) return refused(result.reason, result.sessionId)
  const access = await issueAccess({ userId: result.user.id, sessionId: result.session.id, roles: result.user.roles, amr: result.session.amr, authTime: result.session.authTime ?? result.session.createdAt, emailVerified: result.user.emailVerified })
  return { ok: true, metricLabel: result.reused ? 'reuse_interval' : 'rotated', tokens: { ...access, ...result } }
}
