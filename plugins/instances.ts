/**
 * Processes sharing the database file. Running several is supported: sessions, rotation and
 * the key ring live in the database. Without REDIS_URL what lives in each process does not: the
 * per-IP rate limits and the per-username login failure limit count apart, so with N processes a
 * client gets up to N times the configured allowance (unless a proxy spreads it over one).
 *
 * Each process keeps a heartbeat row in `leases` (`instance:<holder>`, renewed every
 * HEARTBEAT_MS and expiring after three missed beats, removed on a clean stop) and, when it
 * starts and at each beat, counts the live rows of other processes. When there are others it
 * logs a warning saying so: the process started second at once, the first at its next beat.
 */
import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import fp from 'fastify-plugin'

const HEARTBEAT_MS = 5000
const PREFIX = 'instance:'

export default fp(async function instancesPlugin (app) {
  if (app.config.databasePath === ':memory:') return
  const { leases } = app.repos
  const holder = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`
  const name = PREFIX + holder
  let others = 0

  const beat = async (): Promise<void> => {
    const now = new Date()
    try {
      await leases.renew(name, holder, new Date(now.getTime() + 3 * HEARTBEAT_MS))
      const count = await leases.countOthers(PREFIX, holder, now)
      // With REDIS_URL the limits are shared (plugins/redis.ts): nothing counts apart to warn about.
      if (count > 0 && count !== others && app.config.redisUrl === null) {
        app.log.warn({ otherProcesses: count },
          'another process uses this database file: per-IP rate limits and the per-username login failure limit count apart in each process (docs/operations.md, "Several processes")')
      }
      others = count
    } catch (err) {
      // A database that refuses writes is reported by /ready; the heartbeat waits for the next beat.
      app.log.debug({ err }, 'instance heartbeat failed')
    }
  }
  await beat()
  const timer = setInterval(() => { void beat() }, HEARTBEAT_MS).unref()
  app.addHook('onClose', async () => {
    clearInterval(timer)
    await leases.release(name, holder).catch(() => {})
  })
}, { name: 'instances', fastify: '5.x', dependencies: ['config', 'db'] })
