/**
 * The login throttle (src/auth/login-throttle.ts) kept in Redis, so that every instance sharing
 * one Redis counts one account's guesses together: N instances allow what one allows, however a
 * load balancer spreads the guesses.
 *
 * The rules are the in-memory throttle's, word for word: a fixed window from a key's first
 * attempt, attempts counted when they arrive (`pending`) and settled as `failed`, `unchecked`
 * or right (`reset`). Each operation is one Lua script, which Redis runs alone: reading the
 * entry, deciding and writing it happen in one step, so parallel reservations from several
 * instances never both see the last free place. The window is measured with the `now` the
 * caller passes, as in memory; Redis's own expiry only removes an idle entry some time after
 * its window (a minute later, so that clocks a little apart never end a window early).
 *
 * Fails closed: when Redis cannot answer (down, unreachable, too slow), `reserve` throws
 * THROTTLE_UNAVAILABLE (503) and the password is not evaluated, since a guess that is not
 * counted is a guess that is not limited. A failed `release` or `reset` is only reported: the
 * reservation then stays counted until its window ends, which can refuse a login too many but
 * never allows a guess too many.
 *
 * One thing only Redis needs: a reservation whose settlement never arrives. A reserve that
 * timed out here may still run in Redis later (a Redis that answered too slowly), and an
 * instance may die while it checks a password; in memory neither leaves a trace, here both would
 * hold a place until the window ends and refuse the account's owner meanwhile. So the places
 * held by attempts in flight are forgotten PENDING_TTL_MS after the last one was granted: far
 * longer than any password check, far shorter than the window. Failures are never forgotten.
 *
 * Keys are SHA-256 of the username key: Redis never holds a name that was tried (people type
 * passwords into that field).
 */
import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'
import { ThrottleUnavailable } from '../errors.js'
import type { LoginThrottle, LoginThrottleOptions, Reservation } from './login-throttle.js'

export const KEY_PREFIX = 'auth:login-throttle:'
/** How long after its window an idle entry is removed by Redis (clock differences between instances). */
const EXPIRY_SLACK_MS = 60_000
/** After this long without a new reservation, the attempts still counted as in flight are taken as lost. */
export const PENDING_TTL_MS = 60_000

/**
 * ARGV: operation (reserve, failed, unchecked, reset), now (ms), window (ms), max, expiry (ms),
 * pending TTL (ms). Fields: failed, pending, start (of the window), granted (the last reservation).
 * Answers 0 when a reservation is granted (and for every settlement), else the seconds to wait.
 */
const SCRIPT = `
local key = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local entry = redis.call('HMGET', key, 'failed', 'pending', 'start', 'granted')
local failed, pending, start, granted = tonumber(entry[1]), tonumber(entry[2]), tonumber(entry[3]), tonumber(entry[4])
if start ~= nil and now - start >= window then
  redis.call('DEL', key)
  start = nil
end
if start ~= nil and pending > 0 and now - granted >= tonumber(ARGV[6]) then pending = 0 end
if op == 'reserve' then
  local max = tonumber(ARGV[4])
  if start == nil then
    redis.call('HSET', key, 'failed', 0, 'pending', 1, 'start', ARGV[2], 'granted', ARGV[2])
    redis.call('PEXPIRE', key, ARGV[5])
    return 0
  end
  if failed + pending >= max then
    if failed >= max then return math.max(1, math.ceil((start + window - now) / 1000)) end
    return 1
  end
  redis.call('HSET', key, 'pending', pending + 1, 'granted', ARGV[2])
  return 0
end
if start == nil then return 0 end
if pending > 0 then pending = pending - 1 end
if op == 'failed' then failed = failed + 1 elseif op == 'reset' then failed = 0 end
if failed == 0 and pending == 0 then
  redis.call('DEL', key)
else
  redis.call('HSET', key, 'failed', failed, 'pending', pending)
end
return 0
`

type Operation = 'reserve' | 'failed' | 'unchecked' | 'reset'
type ThrottleCommand = (key: string, op: Operation, now: number, window: number, max: number, expiry: number, pendingTtl: number) => Promise<number>

export function createRedisLoginThrottle (
  redis: Redis,
  { max, windowSeconds }: LoginThrottleOptions,
  onError: (err: unknown) => void
): LoginThrottle {
  const windowMs = windowSeconds * 1000
  const client = redis as Redis & { authLoginThrottle?: ThrottleCommand }
  // Sent once per connection and then called by its digest (EVALSHA; ioredis resends the
  // script when a restarted Redis no longer knows it).
  if (client.authLoginThrottle === undefined) client.defineCommand('authLoginThrottle', { numberOfKeys: 1, lua: SCRIPT })
  const run = async (key: string, op: Operation, now: Date): Promise<number> =>
    await client.authLoginThrottle!(KEY_PREFIX + createHash('sha256').update(key).digest('hex'), op, now.getTime(), windowMs, max, windowMs + EXPIRY_SLACK_MS, PENDING_TTL_MS)
  const settle = async (key: string, op: Operation, now: Date): Promise<void> => {
    try {
      await run(key, op, now)
    } catch (err) {
      onError(err)
    }
  }

  return {
    async reserve (key, now): Promise<Reservation> {
      let wait: number
      try {
        wait = await run(key, 'reserve', now)
      } catch (err) {
        onError(err)
        throw new ThrottleUnavailable()
      }
      return wait === 0 ? { ok: true } : { ok: false, retryAfter: wait }
    },
    release: async (key, now, outcome) => { await settle(key, outcome, now) },
    reset: async (key, now) => { await settle(key, 'reset', now) }
  }
}
