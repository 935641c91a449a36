/**
 * The signature of the mail webhook (MAIL_TRANSPORT=webhook), in the manner of Stripe's: the
 * sender writes the time in `X-Webhook-Timestamp` (Unix seconds) and, in `X-Webhook-Signature`,
 * `v1=` + the hex HMAC-SHA256, keyed with NOTIFY_WEBHOOK_SECRET, of `<timestamp>.<raw body>`.
 *
 * A receiver recomputes the HMAC over the raw bytes it received (before any JSON parsing),
 * compares in constant time, and refuses a timestamp further than its tolerance from its own
 * clock, so that a captured request cannot be replayed later. Signing the timestamp with the
 * body is what makes that check worth anything. `verifyWebhookSignature` below is that
 * receiver's check; docs/mail.md shows it in use.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'

export const SIGNATURE_HEADER = 'x-webhook-signature'
export const TIMESTAMP_HEADER = 'x-webhook-timestamp'
export const IDEMPOTENCY_HEADER = 'x-idempotency-key'

/** How far a receiver lets the timestamp be from its own clock, by default. */
export const DEFAULT_TOLERANCE_SECONDS = 300

export function signWebhook (secret: string, timestamp: number, body: string | Buffer): string {
  const hmac = createHmac('sha256', secret).update(`${timestamp}.`).update(body)
  return `v1=${hmac.digest('hex')}`
}

export type VerifyResult = { ok: true } | { ok: false, reason: 'missing' | 'malformed' | 'stale' | 'mismatch' }

export interface VerifyInput {
  secret: string
  /** The raw request body, exactly as received. */
  body: string | Buffer
  timestamp: string | undefined
  signature: string | undefined
  /** The receiver's clock, in ms (default: now). */
  nowMs?: number
  toleranceSeconds?: number
}

export function verifyWebhookSignature (input: VerifyInput): VerifyResult {
  const { timestamp, signature } = input
  if (timestamp === undefined || signature === undefined) return { ok: false, reason: 'missing' }
  if (!/^\d{1,12}$/.test(timestamp) || !/^v1=[0-9a-f]{64}$/.test(signature)) return { ok: false, reason: 'malformed' }
  const skew = Math.abs((input.nowMs ?? Date.now()) / 1000 - Number(timestamp))
  if (skew > (input.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS)) return { ok: false, reason: 'stale' }
  const expected = Buffer.from(signWebhook(input.secret, Number(timestamp), input.body))
  const given = Buffer.from(signature)
  return given.length === expected.length && timingSafeEqual(given, expected) ? { ok: true } : { ok: false, reason: 'mismatch' }
}
