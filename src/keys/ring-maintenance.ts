/**
 * Keeping a running instance's key ring up to date: brought up to date at start and every
 * KEY_CHECK_INTERVAL (rotation on schedule, retirement, removal), and reread within
 * KEY_CHANGE_CHECK_SECONDS of any change another instance or the key CLI stores (a rotation, a
 * revocation), so a revoked key stops signing and verifying everywhere within a second.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { AuditEventInput } from '../../db/repositories/audit.js'
import { KEY_CHANGE_CHECK_SECONDS, type KeyRing, type RingEvent } from './key-ring.js'

/** One log line per change of the ring; kids are public, key material never appears. */
export function logRingEvents (log: FastifyBaseLogger, events: RingEvent[]): void {
  for (const e of events) {
    log.info({ kid: e.kid, alg: e.alg, ...(e.activatesAt === undefined ? {} : { activatesAt: e.activatesAt.toISOString() }) }, `signing key ${e.type}`)
  }
}

export interface RingMaintenanceOptions {
  log: FastifyBaseLogger
  audit: { record: (e: AuditEventInput) => Promise<void> }
  checkIntervalSeconds: number
}

/**
 * Brings the ring up to date now (a wrong or missing KEY_ENCRYPTION_KEY throws here, with a
 * message naming the setting) and starts the checks; answers the function that stops them.
 */
export async function startRingMaintenance (ring: KeyRing, { log, audit, checkIntervalSeconds }: RingMaintenanceOptions): Promise<() => void> {
  /** Logs the ring's changes and records them in the audit log (the CLI records its own). */
  const report = (events: RingEvent[], now: Date): void => {
    logRingEvents(log, events)
    for (const e of events) {
      if (e.type === 'removed') continue
      audit.record({
        type: 'key_rotated', at: now, userId: null, sessionId: null, ip: null, userAgent: null, requestId: null,
        detail: { event: e.type, kid: e.kid, alg: e.alg, by: 'schedule' }
      }).catch((err: unknown) => { log.error({ err }, 'audit event could not be recorded') })
    }
  }
  const bootTime = new Date()
  report(await ring.maintain(bootTime), bootTime)

  const timer = setInterval(() => {
    const now = new Date()
    ring.maintain(now).then((events) => { report(events, now) },
      (err: unknown) => { log.error({ err }, 'key ring maintenance failed') })
  }, checkIntervalSeconds * 1000)
  timer.unref()
  // Between checks: one small read of the signing_keys table, a reload only when it changed.
  let changeCheckFailed = false
  let checking = false
  const changeTimer = setInterval(() => {
    // One check at a time: a slow database (or a long key generation queued before it) never
    // piles checks up behind it.
    if (checking) return
    checking = true
    ring.refresh().finally(() => { checking = false }).then((reloaded) => {
      changeCheckFailed = false
      if (reloaded) log.info({ kids: ring.keys.map((k) => k.kid) }, 'signing keys changed in the database; reloaded')
    }, (err: unknown) => {
      // Logged once per outage, not every second.
      if (!changeCheckFailed) log.error({ err }, 'signing key change check failed')
      changeCheckFailed = true
    })
  }, KEY_CHANGE_CHECK_SECONDS * 1000)
  changeTimer.unref()
  return () => { clearInterval(timer); clearInterval(changeTimer) }
}
