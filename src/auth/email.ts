/**
 * E-mail addresses of accounts: how one given at registration or login is normalised, checked
 * and keyed.
 *
 * - Normalised for storage and display: trimmed, Unicode NFC, the domain lower-cased (domains
 *   are case-insensitive by definition). The local part is kept as typed: it is what the owner
 *   wrote, and what mail is sent to.
 * - Keyed for uniqueness and login by the whole address lower-cased: RFC 5321 allows a server
 *   to treat `Alice@` and `alice@` as two mailboxes, but no common provider does, and two
 *   accounts told apart only by the case of an address would be a trap (a reset mail for one
 *   reaching the other's owner). No provider-specific folding (dots, `+tags`): those rules are
 *   not universal, and an address with a tag is the owner's deliberate choice.
 * - Checked by a deliberately plain pattern (one `@`, a non-empty local part of at most 64
 *   characters, a dotted domain, no spaces or control characters) and at most 254 characters
 *   (RFC 5321's path limit): the verification mail proves the rest.
 */
export type EmailCheck = { ok: true, address: string, key: string } | { ok: false, message: string }

const MAX_LENGTH = 254
const LOCAL_MAX = 64
// No whitespace, controls, `@` in either part, angle brackets or quotes; a domain of dotted labels.
const PATTERN = /^[^\s@<>"\p{Cc}]+@(?:[^\s@<>"\p{Cc}.]+\.)+[^\s@<>"\p{Cc}.]{2,}$/u

/** Normalises `input` (see above) without checking it. */
export function normalizeEmail (input: string): string {
  const trimmed = input.trim().normalize('NFC')
  const at = trimmed.lastIndexOf('@')
  return at < 0 ? trimmed : trimmed.slice(0, at) + '@' + trimmed.slice(at + 1).toLowerCase()
}

/** The uniqueness and lookup key of a normalised address. */
export function emailKey (normalized: string): string {
  return normalized.toLowerCase()
}

export function checkEmail (input: string): EmailCheck {
  const address = normalizeEmail(input)
  if (address.length > MAX_LENGTH) return { ok: false, message: `An e-mail address has at most ${MAX_LENGTH} characters` }
  if (!PATTERN.test(address)) return { ok: false, message: 'Not an e-mail address' }
  if (address.indexOf('@') > LOCAL_MAX) return { ok: false, message: `The part before @ has at most ${LOCAL_MAX} characters` }
  return { ok: true, address, key: emailKey(address) }
}

/**
 * With REQUIRE_EMAIL_VERIFICATION, whether this account must not start a session yet: it has
 * no address, or an unverified one. Asked by every way in (password, passkey) only once the
 * credential is verified, so the answer tells nothing to someone without it.
 */
export function verificationPending (required: boolean, user: { email: string | null, emailVerified: boolean }): boolean {
  return required && !(user.email !== null && user.emailVerified)
}
