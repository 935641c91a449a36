/**
 * Counts password guesses per account (the normalised username key), whatever address they
 * come from, so that many requests from many IPs cannot guess one account's password faster
 * than the limit. Logins and the password-change endpoint's current-password check share it.
 * Unknown usernames are counted exactly like known ones, so the limit reveals nothing.
 *
 * An attempt is counted when it arrives (`reserve`), before its password is hashed, not when
 * the hash says no: otherwise every guess sent at once passes the check while the earlier ones
 * are still hashing. So within a window at most `max` guesses per account are ever evaluated,
 * whatever the interleaving, and the (max+1)-th is refused at once. Each reservation is then
 * settled: a wrong password stays counted until the window ends (`release(..., 'failed')`), an
 * attempt whose password was never checked is given back (`'unchecked'`), and a right password
 * forgets the account's failures (`reset`). Attempts still in flight stay counted until they
 * settle, so a refusal caused by them alone asks the client to retry in a second.
 *
 * The methods may answer a value or a promise, and callers await them, so that a shared store
 * can replace the in-memory one below: with REDIS_URL, src/auth/redis-login-throttle.ts (the
 * same rules, shared by every instance).
 */
export type Reservation = { ok: true } | { ok: false, retryAfter: number }

type Awaitable<T> = T | Promise<T>

export interface LoginThrottle {
  /** Counts one attempt for `key`, or refuses it with the seconds to wait. */
  reserve: (key: string, now: Date) => Awaitable<Reservation>
  /** Settles a reservation whose password was wrong (`failed`) or never checked (`unchecked`). */
  release: (key: string, now: Date, outcome: 'failed' | 'unchecked') => Awaitable<void>
  /** Settles a reservation whose password was right: the key's failures are forgotten. */
  reset: (key: string, now: Date) => Awaitable<void>
}

export interface LoginThrottleOptions {
  max: number
  windowSeconds: number
  maxEntries?: number
}

interface Entry {
  /** Wrong passwords in this window. */
  failed: number
  /** Reservations not settled yet (passwords being checked). */
  pending: number
  start: number
}

/**
 * In memory, fixed windows from a key's first attempt, bounded in size (oldest entries are
 * dropped first). Several instances each keep their own counts: the effective limit is per
 * instance, unless they share the Redis throttle. Each method runs to completion without
 * awaiting, so a reservation is atomic.
 */
export function createLoginThrottle ({ max, windowSeconds, maxEntries = 100_000 }: LoginThrottleOptions): LoginThrottle {
  const windowMs = windowSeconds * 1000
  const entries = new Map<string, Entry>()

  const live = (key: string, now: number): Entry | undefined => {
    const e = entries.get(key)
    if (e !== undefined && now - e.start >= windowMs) { entries.delete(key); return undefined }
    return e
  }
  const forgetIfIdle = (key: string, e: Entry): void => { if (e.failed === 0 && e.pending === 0) entries.delete(key) }

  return {
    reserve (key, now) {
      const t = now.getTime()
      const e = live(key, t)
      if (e === undefined) {
        if (entries.size >= maxEntries) entries.delete(entries.keys().next().value!)
        entries.set(key, { failed: 0, pending: 1, start: t })
        return { ok: true }
      }
      if (e.failed + e.pending >= max) {
        // Refused because of attempts still being checked: they settle within moments.
        const retryAfter = e.failed >= max ? Math.max(1, Math.ceil((e.start + windowMs - t) / 1000)) : 1
        return { ok: false, retryAfter }
      }
      e.pending++
      return { ok: true }
    },
    release (key, now, outcome) {
      const e = live(key, now.getTime())
      if (e === undefined) return
      if (e.pending > 0) e.pending--
      if (outcome === 'failed') e.failed++
      forgetIfIdle(key, e)
    },
    reset (key, now) {
      const e = live(key, now.getTime())
      if (e === undefined) return
      if (e.pending > 0) e.pending--
      e.failed = 0
      forgetIfIdle(key, e)
    }
  }
}
