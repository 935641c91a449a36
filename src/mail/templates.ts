/**
 * Mail templates: a subject, a text part and an HTML part per kind of message, with `{{name}}`
 * placeholders. Values are inserted as they are into the subject and the text part, and
 * HTML-escaped into the HTML part (attribute values included: `&`, `<`, `>`, `"` and `'` are
 * escaped, so a value can neither close an attribute nor open a tag). A subject loses any line
 * break (it becomes a header). A placeholder a kind does not declare is refused when the
 * templates are loaded, and a value missing at render time throws, so no message goes out with
 * a hole in it.
 *
 * A deployment replaces any of them with files in MAIL_TEMPLATES_DIR: `<kind>.subject.txt`,
 * `<kind>.txt`, `<kind>.html` (each file optional; the built-in one stands in for a missing
 * file). Every template may use `product` (MAIL_PRODUCT_NAME), `linkBase` (APP_URL, else
 * PUBLIC_URL) and `recipient`, and the variables its kind lists below.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

export interface Template { subject: string, text: string, html: string }

/** Every kind of message and the variables its caller supplies (besides the common ones). */
export const MAIL_KINDS = {
  verify_email: ['link'],
  password_reset: ['link', 'expiresInMinutes'],
  password_changed: [],
  email_change_confirm: ['link'],
  email_change_notice: ['newEmail', 'link'],
  account_exists: ['link'],
  account_deleted: []
} as const satisfies Record<string, readonly string[]>

export type MailKind = keyof typeof MAIL_KINDS

const COMMON = ['product', 'linkBase', 'recipient']

const layout = (body: string): string => `<!doctype html>
<html><body style="font-family: sans-serif; line-height: 1.5; max-width: 36em">
${body}
<p style="color: #666; font-size: 0.9em">{{product}}</p>
</body></html>
`

const BUILT_IN: Record<MailKind, Template> = {
  verify_email: {
    subject: 'Confirm your e-mail address for {{product}}',
    text: 'Confirm that {{recipient}} is your address for {{product}} by opening this link:\n\n{{link}}\n\nIf you did not ask for this, ignore this message.\n',
    html: layout('<p>Confirm that {{recipient}} is your address for {{product}}.</p>\n<p><a href="{{link}}">Confirm my address</a></p>\n<p>If you did not ask for this, ignore this message.</p>')
  },
  password_reset: {
    subject: 'Reset your {{product}} password',
    text: 'Someone (hopefully you) asked to reset the password of your {{product}} account.\n\nChoose a new password here (the link works for {{expiresInMinutes}} minutes):\n\n{{link}}\n\nIf you did not ask for this, ignore this message: your password stays as it is.\n',
    html: layout('<p>Someone (hopefully you) asked to reset the password of your {{product}} account.</p>\n<p><a href="{{link}}">Choose a new password</a> (the link works for {{expiresInMinutes}} minutes).</p>\n<p>If you did not ask for this, ignore this message: your password stays as it is.</p>')
  },
  password_changed: {
    subject: 'Your {{product}} password was changed',
    text: 'The password of your {{product}} account was just changed, and every session was ended.\n\nIf this was not you, reset your password at once: {{linkBase}}\n',
    html: layout('<p>The password of your {{product}} account was just changed, and every session was ended.</p>\n<p>If this was not you, reset your password at once: <a href="{{linkBase}}">{{linkBase}}</a></p>')
  },
  email_change_confirm: {
    subject: 'Confirm your new e-mail address for {{product}}',
    text: 'Confirm {{recipient}} as the new address of your {{product}} account:\n\n{{link}}\n\nIf you did not ask for this, ignore this message.\n',
    html: layout('<p>Confirm {{recipient}} as the new address of your {{product}} account.</p>\n<p><a href="{{link}}">Confirm the new address</a></p>\n<p>If you did not ask for this, ignore this message.</p>')
  },
  email_change_notice: {
    subject: 'The e-mail address of your {{product}} account is changing',
    text: 'Someone asked to change the address of your {{product}} account to {{newEmail}}.\n\nIf this was not you, undo it here:\n\n{{link}}\n',
    html: layout('<p>Someone asked to change the address of your {{product}} account to {{newEmail}}.</p>\n<p>If this was not you, <a href="{{link}}">undo the change</a>.</p>')
  },
  account_exists: {
    subject: 'Your {{product}} account',
    text: 'Someone tried to register {{recipient}} with {{product}}, but you already have an account.\n\nIf you forgot your password, reset it here:\n\n{{link}}\n\nIf this was not you, ignore this message.\n',
    html: layout('<p>Someone tried to register {{recipient}} with {{product}}, but you already have an account.</p>\n<p>If you forgot your password, <a href="{{link}}">reset it here</a>.</p>\n<p>If this was not you, ignore this message.</p>')
  },
  account_deleted: {
    subject: 'Your {{product}} account was deleted',
    text: 'Your {{product}} account and its personal data were deleted.\n',
    html: layout('<p>Your {{product}} account and its personal data were deleted.</p>')
  }
}

export class MailTemplateError extends Error {
  override name = 'MailTemplateError'
}

const PLACEHOLDER = /\{\{\s*([A-Za-z][A-Za-z0-9_]*)\s*\}\}/g

export function escapeHtml (value: string): string {
  return value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)
}

function fill (template: string, values: Record<string, string>, escape: (v: string) => string): string {
  return template.replace(PLACEHOLDER, (_m, name: string) => {
    const value = values[name]
    if (value === undefined) throw new MailTemplateError(`mail template: no value for {{${name}}}`)
    return escape(value)
  })
}

function checkPlaceholders (kind: MailKind, part: string, template: string, where: string): void {
  const allowed = new Set<string>([...COMMON, ...MAIL_KINDS[kind]])
  for (const m of template.matchAll(PLACEHOLDER)) {
    if (!allowed.has(m[1]!)) throw new MailTemplateError(`${where}: {{${m[1]}}} is not a variable of ${kind} ${part} (use ${[...allowed].join(', ')})`)
  }
}

export type Templates = Record<MailKind, Template>

/**
 * The built-in templates, with the files of `dir` in place of those it has. Throws a
 * MailTemplateError naming MAIL_TEMPLATES_DIR for an unknown placeholder.
 */
export function loadTemplates (dir?: string): Templates {
  const templates = { ...BUILT_IN }
  if (dir === undefined) return templates
  for (const kind of Object.keys(MAIL_KINDS) as MailKind[]) {
    const t = { ...templates[kind] }
    for (const [part, file] of [['subject', `${kind}.subject.txt`], ['text', `${kind}.txt`], ['html', `${kind}.html`]] as const) {
      const path = join(dir, file)
      if (!existsSync(path)) continue
      const content = readFileSync(path, 'utf8')
      checkPlaceholders(kind, part, content, `MAIL_TEMPLATES_DIR: ${path}`)
      t[part] = part === 'subject' ? content.trim() : content
    }
    templates[kind] = t
  }
  return templates
}

export interface RenderedMail { kind: MailKind, recipient: string, subject: string, text: string, html: string }

export interface MailContext { product: string, linkBase: string }

/** The message of `kind` to `recipient`: what the outbox stores. */
export function renderMail (templates: Templates, context: MailContext, kind: MailKind, recipient: string, vars: Record<string, string | number>): RenderedMail {
  const values: Record<string, string> = { product: context.product, linkBase: context.linkBase, recipient }
  for (const [k, v] of Object.entries(vars)) values[k] = String(v)
  const t = templates[kind]
  return {
    kind,
    recipient,
    // A header: a line break in a value must not start another header.
    subject: fill(t.subject, values, (v) => v).replace(/[\r\n]+/g, ' ').trim(),
    text: fill(t.text, values, (v) => v),
    html: fill(t.html, values, escapeHtml)
  }
}
