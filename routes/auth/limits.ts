import type { Config } from '../../src/config.js'

/** A route's rate limit from config, or none when rate limiting is switched off. */
export function routeLimit (config: Config, limit: { max: number, windowSeconds: number }): { max: number, timeWindow: number } | false {
  return config.rateLimit.enabled ? { max: limit.max, timeWindow: limit.windowSeconds * 1000 } : false
}
