/**
 * Deleting an account: by its owner (DELETE /api/auth/me), by an administrator
 * (DELETE /api/admin/users/:user) or from the admin CLI (`delete-user`). One transaction of the
 * account-deletion repository (db/repositories/account-deletion.ts) removes the user row with
 * its sessions and account tokens, scrubs the personal data from the account's earlier audit
 * events, writes the tombstone event `account_deleted` (the user id, when, by whom: no name,
 * no address, no client address) and enqueues the `account_deleted` notice to the address the
 * account had. The username and the address are free for a new registration once it commits.
 */
import type { Repositories } from '../../db/repositories/index.js'
import type { AccessClaims } from '../keys/access-tokens.js'

/** Who deleted the account, as the tombstone names it: the owner, an administrator's id, or the CLI. */
export type DeletedBy = 'self' | 'cli' | { admin: string }

export interface DeleteAccountDeps {
  repos: Pick<Repositories, 'accountDeletion' | 'audit'>
  /** Enqueues the notice (synchronous, inside the deletion's transaction); null when mail is off. */
  notify: ((to: string, now: Date) => void) | null
}

export interface DeleteAccount {
  userId: string
  /** The security stamp read with the password that was checked; null when no password was (admin, CLI, recent login). */
  epoch: number | null
  by: DeletedBy
  requestId?: string | null
  now: Date
}

/** True when the account was deleted; false when it was gone, or its stamp moved since `epoch`. */
export async function deleteAccount (deps: DeleteAccountDeps, d: DeleteAccount): Promise<boolean> {
  const by = d.by === 'self' || d.by === 'cli' ? d.by : `admin:${d.by.admin}`
  const result = await deps.repos.accountDeletion.delete({ userId: d.userId, epoch: d.epoch, now: d.now }, (email) => {
    // Written with the repository, not the request's recorder: the tombstone must commit with
    // the deletion (a failed insert rolls it back), and carries no client address or user agent.
    deps.repos.audit.recordNow({ type: 'account_deleted', at: d.now, userId: d.userId, requestId: d.requestId ?? null, detail: { by } })
    if (email !== null && deps.notify !== null) deps.notify(email, d.now)
  })
  return result.deleted
}

/**
 * Whether the access token proves a login recent enough to delete the account without the
 * password: its `auth_time` (when the password or another factor was last presented, kept
 * across refreshes) at most `windowSeconds` before `now`. A token without `auth_time` never
 * does; the password is then required.
 */
export function recentlyAuthenticated (claims: AccessClaims, now: Date, windowSeconds: number): boolean {
  const authTime = (claims as { auth_time?: unknown }).auth_time
  if (typeof authTime !== 'number' || !Number.isFinite(authTime)) return false
  const age = now.getTime() / 1000 - authTime
  return age >= -5 && age <= windowSeconds
}
