/**
 * One housekeeping pass: deletes refresh tokens past their expiry, sessions that ended (revoked
 * or expired) more than SESSION_RETENTION ago, audit events older than AUDIT_RETENTION, MFA
 * challenges (login second steps) past their expiry, and sent mail older than AUDIT_RETENTION
 * (what is left of it once sent is a record of who was mailed what and when, kept as long as the
 * audit log; dead letters stay until retried).
 * The service schedules it (plugins/housekeeping.ts); `npm run admin -- prune` runs it by hand.
 */
import type { Counter } from 'prom-client'
import type { Repositories } from '../db/repositories/index.js'
import type { Config } from './config.js'

export interface HousekeepingResult {
  refreshTokens: number
  sessions: number
  auditEvents: number
  mfaChallenges: number
  sentMail: number
  accountTokens: number
  ms: number
}

export interface HousekeepingDeps {
  repos: Pick<Repositories, 'sessions' | 'audit' | 'mfa' | 'outbox' | 'accountTokens'>
  config: Pick<Config, 'housekeeping' | 'refresh'>
  /** The service's counter of deleted rows, by kind; the CLI has none. */
  metrics?: { housekeepingDeleted: Pick<Counter<'kind'>, 'inc'> }
}

/** One pass over every table that grows without bound. */
export async function runHousekeeping ({ repos, config, metrics }: HousekeepingDeps, now: Date): Promise<HousekeepingResult> {
  const started = performance.now()
  const { batchSize, sessionRetention, auditRetention } = config.housekeeping
  const pruned = await repos.sessions.pruneExpired(now, new Date(now.getTime() - sessionRetention * 1000), batchSize, new Date(now.getTime() - config.refresh.ttl * 1000))
  const auditEvents = await repos.audit.pruneBefore(new Date(now.getTime() - auditRetention * 1000), batchSize)
  const sentMail = await repos.outbox.pruneSentBefore(new Date(now.getTime() - auditRetention * 1000), batchSize)
  const accountTokens = await repos.accountTokens.pruneExpired(now)
  metrics?.housekeepingDeleted.inc({ kind: 'refresh_tokens' }, pruned.tokens)
  metrics?.housekeepingDeleted.inc({ kind: 'sessions' }, pruned.sessions)
  const mfaChallenges = await repos.mfa.pruneChallenges(now)
  metrics?.housekeepingDeleted.inc({ kind: 'audit_events' }, auditEvents)
  metrics?.housekeepingDeleted.inc({ kind: 'mfa_challenges' }, mfaChallenges)
  metrics?.housekeepingDeleted.inc({ kind: 'sent_mail' }, sentMail)
  metrics?.housekeepingDeleted.inc({ kind: 'account_tokens' }, accountTokens)
  return { refreshTokens: pruned.tokens, sessions: pruned.sessions, auditEvents, mfaChallenges, sentMail, accountTokens, ms: Math.round(performance.now() - started) }
}
