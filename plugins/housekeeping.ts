/**
 * Housekeeping (src/housekeeping.ts: expired refresh tokens, ended sessions, old audit events)
 * every HOUSEKEEPING_INTERVAL (0 switches the schedule off; `npm run admin -- prune` runs it by hand).
 *
 * Deletes go in batches of HOUSEKEEPING_BATCH_SIZE rows, one short statement each, yielding to
 * the event loop in between: a request waits for at most one batch, never for the whole purge.
 * With several instances on one database, a lease makes one instance run it per interval.
 */
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { FastifyBaseLogger } from 'fastify'
import fp from 'fastify-plugin'
import { runHousekeeping, type HousekeepingResult } from '../src/housekeeping.js'

export interface Housekeeping {
  /** Runs a pass now (if this instance gets the lease); null when another instance holds it. */
  run: (now?: Date) => Promise<HousekeepingResult | null>
}

declare module 'fastify' {
  interface FastifyInstance {
    housekeeping: Housekeeping
  }
}

const LEASE = 'housekeeping'
/** How far the wall clock may run ahead of the monotonic clock between two passes (NTP slews, timer drift). */
const CLOCK_JUMP_TOLERANCE_MS = 5 * 60_000

export default fp(async function housekeepingPlugin (app) {
  const { config, repos, metrics } = app
  const log: FastifyBaseLogger = app.log.child({ job: 'housekeeping' })
  const intervalMs = config.housekeeping.interval * 1000
  const holder = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`
  let running: Promise<HousekeepingResult | null> | null = null
  /** The time the previous pass pruned as of, and the monotonic clock then. */
  let previous: { wallMs: number, monotonicMs: number } | null = null

  /**
   * The time a pass prunes as of. The wall clock can jump (a bad NTP answer, a VM restored or
   * resumed); a jump of a year would make every session look long expired and delete them
   * all, for good, even once the clock is put right. So after the first pass of a process the
   * horizon advances no faster than the monotonic clock (plus a small tolerance); a larger
   * jump is logged and pruning lags behind the wall clock (deleting later is harmless;
   * deleting live sessions is not). A restart takes the wall clock as it is.
   */
  function horizon (now: Date): Date {
    const monotonicMs = performance.now()
    let wallMs = now.getTime()
    if (previous !== null) {
      const bound = previous.wallMs + (monotonicMs - previous.monotonicMs) + CLOCK_JUMP_TOLERANCE_MS
      if (wallMs > bound) {
        log.warn({ wallClock: now.toISOString(), prunesAsOf: new Date(bound).toISOString(), jumpSeconds: Math.round((wallMs - bound) / 1000) },
          'the wall clock jumped forward since the last housekeeping pass; pruning only as far as the time that really passed')
        wallMs = bound
      }
    }
    previous = { wallMs, monotonicMs }
    return new Date(wallMs)
  }

  async function pass (now: Date): Promise<HousekeepingResult | null> {
    const asOf = horizon(now)
    // The lease runs out a little before the next tick, so that the next pass (here or on
    // another instance) can take it.
    const until = new Date(now.getTime() + Math.max(1000, intervalMs - 1000))
    if (!await repos.leases.acquire(LEASE, holder, now, until)) return null
    const result = await runHousekeeping({ repos, config, metrics }, asOf)
    log.info(result, 'housekeeping done')
    return result
  }

  const housekeeping: Housekeeping = {
    run (now = new Date()) {
      // One pass at a time: a slow pass is never overlapped by the next tick.
      running ??= pass(now).finally(() => { running = null })
      return running
    }
  }
  app.decorate('housekeeping', housekeeping)

  if (intervalMs === 0) return
  let timer: NodeJS.Timeout | null = null
  let closed = false
  const schedule = (delayMs: number): void => {
    timer = setTimeout(() => {
      housekeeping.run().catch((err: unknown) => { log.error({ err }, 'housekeeping failed') })
        .finally(() => { if (!closed) schedule(intervalMs) })
    }, delayMs)
    timer.unref()
  }
  // The first pass waits a little, so that it never competes with start-up.
  app.addHook('onReady', async () => { schedule(Math.min(intervalMs, 60_000)) })
  app.addHook('onClose', async () => {
    closed = true
    if (timer !== null) clearTimeout(timer)
    await running?.catch(() => null)
  })
}, { name: 'housekeeping', fastify: '5.x', dependencies: ['db', 'metrics'] })
