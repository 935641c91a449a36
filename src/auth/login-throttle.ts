/**
 * Counts failed logins per username (normalised), whatever address they come from, so that
 * many requests from many IPs cannot guess one account's password faster than the limit.
 * Unknown usernames are counted exactly like known ones, so the limit reveals nothing.
 *
 * In memory, fixed windows, bounded in size (oldest entries are dropped first). Several
 * instances each keep their own counts: the effective limit is per instance.
 */
export interface LoginThrottleOptions {
  max: number
  windowSeconds: number
  maxEntries?: number
}

export function createLoginThrottle ({ max, windowSeconds, maxEntries = 100_000 }: LoginThrottleOptions) {
  const windowMs = windowSeconds * 1000
  const entries = new Map<string, { count: number, start: number }>()

  const live = (key: string, now: number): { count: number, start: number } | undefined => {
    const e = entries.get(key)
    if (e !== undefined && now - e.start >= windowMs) { entries.delete(key); return undefined }
    return e
  }

  return {
    /** Seconds until this username may try again, or 0 when it may now. */
    retryAfter (key: string, now: Date): number {
      const e = live(key, now.getTime())
      return e !== undefined && e.count >= max ? Math.max(1, Math.ceil((e.start + windowMs - now.getTime()) / 1000)) : 0
    },
    recordFailure (key: string, now: Date): void {
      const t = now.getTime()
      const e = live(key, t)
      if (e !== undefined) { e.count++; return }
      if (entries.size >= maxEntries) entries.delete(entries.keys().next().value!)
      entries.set(key, { count: 1, start: t })
    },
    reset (key: string): void { entries.delete(key) }
  }
}

export type LoginThrottle = ReturnType<typeof createLoginThrottle>
