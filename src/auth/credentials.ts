/**
 * Username and password rules (contract + NIST SP 800-63B): NFKC normalisation; usernames of
 * 3–64 letters, digits and `. _ - @ +`, written in one script, never shaped like a user id;
 * passwords with a minimum and a maximum length, checked against a list of common passwords,
 * with no composition rules. Lengths count Unicode code points, as a person would.
 *
 * Two usernames are the same account name when their fold keys are equal (NFKC with full
 * Unicode case folding: `Straße` = `STRASSE`, `ΚΟΣΜΟΣ` = `κοσμος` = `κοσμοσ`), and a name is
 * refused when its confusable skeleton (Unicode TS #39) equals an existing one's (`r00t`
 * beside `root`, Cyrillic `сор` beside Latin `cop`): it would pass for someone else.
 */
import { dictionary } from '@zxcvbn-ts/language-common'
import { usernameFold } from '../../db/username-keys.js'

/** The keys a username is stored and found under (its fold key and confusable skeleton). */
export { usernameFold, usernameKey, usernameKeys, usernameSkeleton } from '../../db/username-keys.js'

export const USERNAME_MIN = 3
export const USERNAME_MAX = 64
export const PASSWORD_MAX = 256
const USERNAME_PATTERN = /^[\p{L}\p{M}\p{N}._@+-]+$/u
/** The shape of a user id (a UUID), so that no username can be mistaken for one. */
const ID_SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export type Checked = { ok: true, value: string } | { ok: false, message: string }

export function normalizeUsername (raw: string): string {
  return raw.normalize('NFKC').trim()
}


// Script property values (ISO 15924 codes) that this runtime's regular expressions know.
// A letter of a script missing here gets no script and makes its username "mixed", refused:
// the safe side, for scripts newer than this list.
const SCRIPT_CODES = ('Adlm Aghb Ahom Arab Armi Armn Avst Bali Bamu Bass Batk Beng Berf Bhks Bopo Brah Brai Bugi Buhd Cakm ' +
  'Cans Cari Cham Cher Chrs Copt Cpmn Cprt Cyrl Deva Diak Dogr Dsrt Dupl Egyp Elba Elym Ethi Gara Geor Glag Gong Gonm Goth ' +
  'Gran Grek Gujr Gukh Guru Hang Hani Hano Hatr Hebr Hira Hluw Hmng Hmnp Hung Ital Java Kali Kana Kawi Khar Khmr Khoj Kits ' +
  'Knda Krai Kthi Lana Laoo Latn Lepc Limb Lina Linb Lisu Lyci Lydi Mahj Maka Mand Mani Marc Medf Mend Merc Mero Mlym Modi ' +
  'Mong Mroo Mtei Mult Mymr Nagm Nand Narb Nbat Newa Nkoo Nshu Ogam Olck Onao Orkh Orya Osge Osma Ougr Palm Pauc Perm Phag ' +
  'Phli Phlp Phnx Plrd Prti Rjng Rohg Runr Samr Sarb Saur Sgnw Shaw Shrd Sidd Sidt Sind Sinh Sogd Sogo Sora Soyo Sund Sunu ' +
  'Sylo Syrc Tagb Takr Tale Talu Taml Tang Tavt Tayo Telu Tfng Tglg Thaa Thai Tibt Tirh Tnsa Todr Tols Toto Tutg Ugar Vaii ' +
  'Vith Wara Wcho Xpeo Xsux Yezi Yiii Zanb').split(' ').flatMap((code) => {
  try {
    return [{ code, scx: new RegExp(`^\\p{Script_Extensions=${code}}$`, 'u') }]
  } catch {
    return []
  }
})
const COMMON_OR_INHERITED = /^[\p{Script_Extensions=Zyyy}\p{Script_Extensions=Zinh}]$/u
/** UTS #39's augmented script sets: Han goes with Hiragana and Katakana (Japanese), Hangul (Korean), Bopomofo. */
const AUGMENTED: Record<string, string[]> = {
  Hani: ['Hanb', 'Jpan', 'Kore'],
  Hira: ['Jpan'],
  Kana: ['Jpan'],
  Hang: ['Kore'],
  Bopo: ['Hanb']
}

/**
 * UTS #39 single-script test: the intersection of the characters' augmented Script_Extensions
 * sets is not empty. Common and Inherited characters (digits, `. _ - @ +`, combining marks)
 * go with any script.
 */
export function isSingleScript (value: string): boolean {
  let common: Set<string> | undefined
  for (const ch of value) {
    if (COMMON_OR_INHERITED.test(ch)) continue
    const scripts = new Set<string>()
    for (const { code, scx } of SCRIPT_CODES) {
      if (!scx.test(ch)) continue
      scripts.add(code)
      for (const extra of AUGMENTED[code] ?? []) scripts.add(extra)
    }
    common = common === undefined ? scripts : new Set<string>([...common].filter((s: string) => scripts.has(s)))
    if (common.size === 0) return false
  }
  return true
}

export function checkUsername (raw: string): Checked {
  const value = normalizeUsername(raw)
  const length = [...value].length
  if (length < USERNAME_MIN || length > USERNAME_MAX) {
    return { ok: false, message: `username must be ${USERNAME_MIN} to ${USERNAME_MAX} characters` }
  }
  if (!USERNAME_PATTERN.test(value)) {
    return { ok: false, message: 'username may contain only letters, digits and . _ - @ +' }
  }
  if (ID_SHAPE.test(value) || ID_SHAPE.test(usernameFold(value))) {
    return { ok: false, message: 'username must not look like a user id' }
  }
  if (!isSingleScript(value)) {
    return { ok: false, message: 'username must be written in one script (digits and . _ - @ + go with any)' }
  }
  return { ok: true, value }
}

export function createPasswordPolicy (minLength: number) {
  // The bundled list (zxcvbn-ts's 49k most common passwords); only entries long enough to
  // pass the length rule can matter, so only those are kept in memory.
  const common = new Set(
    (dictionary['passwords-common'] as string[]).filter((p) => [...p].length >= minLength).map((p) => p.toLowerCase())
  )
  return {
    minLength,
    check (raw: string): Checked {
      const value = raw.normalize('NFKC')
      const length = [...value].length
      if (length < minLength) return { ok: false, message: `password must be at least ${minLength} characters` }
      if (length > PASSWORD_MAX) return { ok: false, message: `password must be at most ${PASSWORD_MAX} characters` }
      if (common.has(value.toLowerCase())) return { ok: false, message: 'password is too common; choose another' }
      return { ok: true, value }
    }
  }
}

export type PasswordPolicy = ReturnType<typeof createPasswordPolicy>
