/**
 * The keys under which `users` stores and finds a username (db/schema.ts): the lower-cased
 * key, the case-fold key that makes names unique, and the confusable skeleton that refuses
 * look-alikes. The rules for what a valid username is live in src/auth/credentials.ts, which
 * re-exports these; they sit here because the users repository and the migration backfill
 * compute them too.
 */
import unhomoglyph from 'unhomoglyph'
import { caseFold } from 'unicode-case-folding'

/**
 * The lower-cased form, the uniqueness key of rows registered before fold keys (kept in
 * `users.username_key`, still unique). New rows store it too.
 */
export function usernameKey (normalized: string): string {
  return normalized.toLowerCase()
}

/**
 * The key that makes usernames unique regardless of case: Unicode's compatibility caseless
 * match (D146, NFKD(fold(NFKD(fold(NFD(x)))))), stored composed (NFC). Full case folding maps
 * ß to ss and every sigma to σ, which toLowerCase does not.
 */
export function usernameFold (raw: string): string {
  return caseFold(caseFold(raw.normalize('NFD')).normalize('NFKD')).normalize('NFKD').normalize('NFC')
}

/** UTS #39 skeleton: NFD, each character replaced by its confusable prototype, NFD again. */
function skeleton (s: string): string {
  return unhomoglyph(s.normalize('NFD')).normalize('NFD')
}

/**
 * The confusable skeleton of a username, for refusing look-alikes. Taken of the fold key, so
 * that it is the same for every spelling of one name that differs only in case, and folded
 * again, because prototypes may be capitals (digit zero's is O): `r00t` meets `root`.
 */
export function usernameSkeleton (raw: string): string {
  return usernameFold(skeleton(usernameFold(raw))).normalize('NFD')
}

/** The lookup keys of a username as stored in `users`. */
export function usernameKeys (normalized: string): { key: string, fold: string, skeleton: string } {
  return { key: usernameKey(normalized), fold: usernameFold(normalized), skeleton: usernameSkeleton(normalized) }
}
