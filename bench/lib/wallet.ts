/**
 * The refresh tokens the harness holds: one current (unspent) token per session it drives.
 * A refresh request takes a token out; its 200 answer puts the successor back. So every
 * request presents a token that has never been presented before — the path measured is a
 * real rotation, never the reuse interval — while the number of sessions stays fixed.
 */
export interface Held {
  /** Index of the seeded user the session belongs to. */
  user: number
  token: string
}

export class Wallet {
  private queue: Held[]
  private head = 0
  /** Requests that found the wallet empty (they present no valid token and are counted as failures). */
  empty = 0

  constructor (entries: Held[]) {
    this.queue = [...entries]
  }

  get size (): number {
    return this.queue.length - this.head
  }

  take (): Held | undefined {
    if (this.head >= this.queue.length) {
      this.empty++
      return undefined
    }
    const held = this.queue[this.head++]
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head)
      this.head = 0
    }
    return held
  }

  put (held: Held): void {
    this.queue.push(held)
  }

  /** Takes out one token per distinct user, up to `count` users (the rest stays in). */
  takeDistinctUsers (count: number): Held[] {
    const picked: Held[] = []
    const kept: Held[] = []
    const seen = new Set<number>()
    for (let held = this.take(); held !== undefined; held = this.take()) {
      if (picked.length < count && !seen.has(held.user)) {
        seen.add(held.user)
        picked.push(held)
      } else {
        kept.push(held)
      }
    }
    this.empty--
    this.queue = kept
    this.head = 0
    return picked
  }
}

/** The refresh token in a response's Set-Cookie header(s), if any. */
export function cookieToken (headers: Record<string, string | string[]>, name = 'refresh_token'): string | undefined {
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== 'set-cookie') continue
    for (const cookie of Array.isArray(value) ? value : [value]) {
      const match = new RegExp(`^${name}=([^;]+)`).exec(cookie)
      if (match !== null && match[1] !== '') return match[1]
    }
  }
  return undefined
}
