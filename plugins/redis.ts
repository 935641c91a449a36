/**
 * `app.redis`: the connection to REDIS_URL that instances share their counters through (the
 * per-IP rate limits and the per-account login throttle), or null without REDIS_URL, when each
 * instance counts in its own memory as a single instance should. See src/redis.ts for the
 * bounded timeouts and docs/redis.md for what happens while Redis is down.
 */
import fp from 'fastify-plugin'
import { sharedCountersWarning } from '../src/config.js'
import { closeRedis, connectRedis, type Redis } from '../src/redis.js'

declare module 'fastify' {
  interface FastifyInstance {
    redis: Redis | null
  }
}

export default fp(async function redisPlugin (app) {
  const { config } = app
  const warning = sharedCountersWarning(config)
  if (warning !== undefined) app.log.warn(warning)
  if (config.redisUrl === null) {
    app.decorate('redis', null)
    return
  }
  const redis = await connectRedis(config.redisUrl, app.log)
  app.decorate('redis', redis)
  app.addHook('onClose', async () => { await closeRedis(redis) })
}, { name: 'redis', fastify: '5.x', dependencies: ['config'] })
