import type { Test } from 'tap'

export const SECOND = 1000
export const MINUTE = 60 * SECOND
export const HOUR = 60 * MINUTE
export const DAY = 24 * HOUR

export interface FakeDate {
  /** Moves the clock forward by `ms`. */
  advance: (ms: number) => void
  /** The fake clock's current time, in ms since the epoch. */
  now: () => number
}

/**
 * A fake clock for expiry tests that replaces only `Date` (tap's t.clock also patches
 * setImmediate and timers, which app.inject and a listening server need, and so hangs).
 * Frozen at `start` by default; with `running: true` it keeps ticking with the real clock
 * and `advance` only adds an offset. Restored at teardown.
 */
export function fakeDate (t: Test, start = Date.now(), opts: { running?: boolean } = {}): FakeDate {
  const RealDate = Date
  const realStart = RealDate.now()
  let offset = 0
  const current = (): number => start + offset + (opts.running === true ? RealDate.now() - realStart : 0)
  class FakeDate extends RealDate {
    constructor (...args: unknown[]) {
      if (args.length === 0) super(current())
      else super(...(args as [string | number | Date]))
    }

    static override now (): number { return current() }
  }
  globalThis.Date = FakeDate as DateConstructor
  t.teardown(() => { globalThis.Date = RealDate })
  return { advance: (ms: number) => { offset += ms }, now: current }
}
