/**
 * The refresh-token rules of the contract, as plain functions over the sessions repository.
 * They return results, never HTTP: the routes decide what a reason means on the wire.
 *
 * - Each refresh rotates: the presented token is spent and its successor returned.
 * - A spent token presented again within REFRESH_REUSE_INTERVAL of being spent (two tabs at
 *   once, a retry after a lost response) gets the session's current token: the successor's
 *   secret is recomputed from the presented one (see refresh-token.ts), its row found through
 *   the parent's `successor_id`, and so on down the chain.
 * - A spent token presented later is treated as stolen: the whole session ends.
 * - Each new token lives REFRESH_TOKEN_TTL (sliding), never past the session's absolute end.
 */
import { randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import type { RevokeReason, SessionRow, SessionsRepository, SessionUser, TokenLookup, TokenRow } from '../../db/repositories/sessions.js'
import { createRefreshTokenCodec, hashRefreshToken, secretMatches, type ParsedRefreshToken } from './refresh-token.js'

export interface SessionPolicy {
  refreshTtlSeconds: number
  sessionMaxAgeSeconds: number
  reuseIntervalSeconds: number
}

export interface Issued {
  /** The refresh token to hand to the client. */
  refreshToken: string
  refreshExpiresAt: Date
  session: SessionRow
  user: SessionUser
  /** True when this answers a re-presented token within the reuse interval. */
  reused: boolean
}

export type RotateFailure = 'malformed' | 'unknown' | 'expired' | 'revoked' | 'reused'
export type RotateResult = ({ ok: true } & Issued) | { ok: false, reason: RotateFailure, sessionId?: string, userId?: string }

/** How far down a chain a re-presented token may be followed; a real race is a step or two. */
const MAX_CHAIN = 32

const newSessionId = (): string => randomBytes(16).toString('base64url')

export function createSessionManager (repo: SessionsRepository, derivationKeyBytes: Buffer, policy: SessionPolicy) {
  const codec = createRefreshTokenCodec(derivationKeyBytes)
  const ttlMs = policy.refreshTtlSeconds * 1000
  const reuseMs = policy.reuseIntervalSeconds * 1000
  const tokenExpiry = (now: Date, sessionEnd: Date): Date => new Date(Math.min(now.getTime() + ttlMs, sessionEnd.getTime()))

  /**
   * Starts a session for `user`, whose password was checked against the hash read together
   * with `user.credentialEpoch`; null, starting nothing, when that stamp changed meanwhile (a
   * password change, logout-all, a disable) or the account was disabled. `alongside(sessionId)`
   * runs inside the session's transaction (see the repository's `start`).
   */
  async function start (user: SessionUser & { credentialEpoch: number }, client: { userAgent: string | null, ip: string | null, amr: string[] }, now: Date, alongside?: (sessionId: string) => void): Promise<Issued | null> {
    const { amr } = client
    const secret = codec.generateSecret()
    const expiresAt = new Date(now.getTime() + policy.sessionMaxAgeSeconds * 1000)
    const tokenExpiresAt = tokenExpiry(now, expiresAt)
    const id = newSessionId()
    const userAgent = client.userAgent === null ? null : client.userAgent.slice(0, 512)
    // Only an address is kept: behind a proxy the ip comes from a header that may hold anything.
    const ip = client.ip !== null && isIP(client.ip) !== 0 ? client.ip : null
    const tokenId = await repo.start({ id, userId: user.id, credentialEpoch: user.credentialEpoch, userAgent, ip, amr, now, expiresAt, tokenHash: hashRefreshToken(secret), tokenExpiresAt }, alongside)
    if (tokenId === null) return null
    const session: SessionRow = {
      id, userId: user.id, createdAt: now, lastUsedAt: now, expiresAt, refreshExpiresAt: tokenExpiresAt,
      userAgent, ip, revokedAt: null, revokedReason: null, amr, authTime: now
    }
    return { refreshToken: codec.encode(tokenId, secret), refreshExpiresAt: tokenExpiresAt, session, user, reused: false }
  }

  /** The row a presented token names, when its secret is the one stored there. */
  async function find (parsed: ParsedRefreshToken): Promise<TokenLookup | null> {
    const found = await repo.findToken(parsed.id)
    return found !== null && secretMatches(found.token.tokenHash, parsed.secret) ? found : null
  }

  /** Follows derived successors from a spent token to the session's current (unspent) one. */
  async function currentDescendant (spent: TokenRow, secret: Buffer, now: Date): Promise<{ id: number, secret: Buffer, expiresAt: Date } | null> {
    let row = spent
    let cursor = secret
    for (let i = 0; i < MAX_CHAIN; i++) {
      if (row.successorId === null) return null
      cursor = codec.deriveSuccessor(cursor)
      const next = await repo.tokenRow(row.successorId)
      // A successor row whose digest is not the derived secret's is not this chain's (its id
      // was reused after pruning): the chain ends there.
      if (next === null || !secretMatches(next.tokenHash, cursor)) return null
      if (next.spentAt === null) return next.expiresAt > now ? { id: next.id, secret: cursor, expiresAt: next.expiresAt } : null
      row = next
    }
    return null
  }

  /**
   * Spends `presented` and issues its successor, or says why not. On a late reuse the session
   * ends, and `onReuse` runs inside the transaction that ends it (synchronous writes only, such
   * as the audit event), so the revocation and what it writes commit together.
   */
  async function rotate (presented: string, now: Date, onReuse?: (ended: { sessionId: string, userId: string }) => void): Promise<RotateResult> {
    const parsed = codec.parse(presented)
    if (parsed === null) return { ok: false, reason: 'malformed' }
    const { secret } = parsed
    // A second pass happens only when a concurrent request spent the token between our read
    // and our write; on that pass the token is spent and the reuse rule answers.
    for (let attempt = 0; attempt < 2; attempt++) {
      const found = await find(parsed)
      if (found === null) return { ok: false, reason: 'unknown' }
      const { token, session, user } = found
      const ids = { sessionId: session.id, userId: user.id }
      if (session.revokedAt !== null || user.disabled) return { ok: false, reason: 'revoked', ...ids }
      if (session.expiresAt <= now) return { ok: false, reason: 'expired', ...ids }

      if (token.spentAt !== null) {
        if (now.getTime() - token.spentAt.getTime() <= reuseMs) {
          const current = await currentDescendant(token, secret, now)
          if (current === null) return { ok: false, reason: 'revoked', ...ids }
          return { ok: true, refreshToken: codec.encode(current.id, current.secret), refreshExpiresAt: current.expiresAt, session, user, reused: true }
        }
        await repo.revokeAlongside(session.id, 'reuse', now, () => { onReuse?.(ids) })
        return { ok: false, reason: 'reused', ...ids }
      }
      if (token.expiresAt <= now) return { ok: false, reason: 'expired', ...ids }

      const successor = codec.deriveSuccessor(secret)
      const expiresAt = tokenExpiry(now, session.expiresAt)
      const rotated = await repo.rotate({ parentId: token.id, sessionId: session.id, tokenHash: hashRefreshToken(successor), expiresAt, now })
      if (rotated.outcome === 'rotated') {
        return {
          ok: true,
          refreshToken: codec.encode(rotated.id, successor),
          refreshExpiresAt: expiresAt,
          session: { ...session, lastUsedAt: now, refreshExpiresAt: expiresAt },
          user,
          reused: false
        }
      }
    }
    /* c8 ignore next */
    return { ok: false, reason: 'revoked' }
  }

  /** Ends the session a refresh token belongs to (any of its tokens, spent or not). */
  async function endByToken (presented: string, reason: RevokeReason, now: Date): Promise<{ sessionId: string, userId: string } | null> {
    const parsed = codec.parse(presented)
    if (parsed === null) return null
    const found = await find(parsed)
    if (found === null) return null
    const ended = await repo.revoke(found.session.id, reason, now)
    return ended ? { sessionId: found.session.id, userId: found.user.id } : null
  }

  return { start, rotate, endByToken }
}

export type SessionManager = ReturnType<typeof createSessionManager>
