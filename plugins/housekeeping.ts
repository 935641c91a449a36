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

export default fp(async function housekeepingPlugin (app) {
  const { config, repos, metrics } = app
  const log: FastifyBaseLogger = app.log.child({ job: 'housekeeping' })
  const intervalMs = config.housekeeping.interval * 1000
  const holder = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`
  let running: Promise<HousekeepingResult | null> | null = null

  async function pass (now: Date): Promise<HousekeepingResult | null> {
    // The lease runs out a little before the next tick, so that the next pass (here or on
    // another instance) can take it.
    const until = new Date(now.getTime() + Math.max(1000, intervalMs - 1000))
    if (!await repos.leases.acquire(LEASE, holder, now, until)) return null
    const result = await runHousekeeping({ repos, config, metrics }, now)
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
