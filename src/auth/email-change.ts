/**
 * Changing an account's address: the rules the routes (routes/auth/email-change.ts) follow.
 *
 * A request (POST /api/auth/email/change) mails a `change_email` token to the NEW address; the
 * address changes only when that token is spent (POST /api/auth/email/confirm), which also
 * mails the OLD address a notice with an `undo_email_change` token. Spending the undo token
 * (the same endpoint: the token's purpose decides) restores the old address and ends every
 * session, since whoever changed the address may hold one.
 */
import type { Config } from '../config.js'

/**
 * What a change request answers when the new address belongs to another account. With
 * REQUIRE_EMAIL_VERIFICATION=false registration already tells anyone that an address is in
 * use (409 EMAIL_TAKEN), so the change says it too. The mode where registration is silent
 * about taken addresses must be silent here as well ('silent': 202 as for a free address, no
 * token, no mail to the new address); this is the one place that decides.
 */
export function takenAddressAnswer (_config: Config): 'refuse' | 'silent' {
  return 'refuse'
}
