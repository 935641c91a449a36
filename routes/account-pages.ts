/**
 * The minimal account pages mailed links lead to when no APP_URL is set (src/mail/links.ts):
 * /account/verify-email, /account/reset-password, /account/confirm-email and
 * /account/undo-email-change. Opening one spends nothing: a GET or HEAD (a person, a mail
 * scanner, a link preview, a prefetch) only gets the page. Its script takes `token` from the
 * address, takes it off the address bar, and POSTs it to the matching endpoint when the person
 * presses the button, then shows the outcome. The reset page without a token asks for the
 * address to send a reset link to instead.
 *
 * Every answer is personal and carries a token in its URL: `Cache-Control: no-store`,
 * `Referrer-Policy: no-referrer` (the token never leaves in a Referer), `X-Robots-Tag: noindex`,
 * and a Content-Security-Policy that allows only the page's own inline script and style (by
 * their SHA-256), requests to this origin, no framing, no form submission.
 */
import { createHash } from 'node:crypto'
import type { FastifyPluginAsync, FastifySchema } from 'fastify'
import { ACCOUNT_PAGES } from '../src/mail/links.js'
import { escapeHtml } from '../src/mail/templates.js'

/** What a page's form does: the endpoint (relative to /api/auth/), its fields, its texts. */
interface Mode {
  endpoint: string
  title: string
  intro: string
  fields: string
  button: string
  done: string
}

const PASSWORDS = '<label>New password <input name="newPassword" type="password" autocomplete="new-password" required></label>\n' +
  '<label>The new password again <input name="repeat" type="password" autocomplete="new-password" required></label>'

const MODES = {
  'verify-email': { endpoint: 'email/verify', title: 'Confirm your e-mail address', intro: 'Press the button to confirm that this address is yours.', fields: '', button: 'Confirm my address', done: 'Your address is confirmed. You can close this page.' },
  'confirm-email': { endpoint: 'email/confirm', title: 'Confirm your new e-mail address', intro: 'Press the button to make this address the one of your account.', fields: '', button: 'Confirm the new address', done: 'Your new address is confirmed. You can close this page.' },
  'undo-email-change': { endpoint: 'email/confirm', title: 'Undo the address change', intro: 'Press the button to give your account back its previous address.', fields: '', button: 'Undo the change', done: 'The change is undone. Consider changing your password too.' },
  'reset-password': { endpoint: 'password/reset', title: 'Choose a new password', intro: 'Every session of your account ends when the new password is set.', fields: PASSWORDS, button: 'Set the new password', done: 'Your password is changed. Log in with the new one.' },
  'forgot-password': { endpoint: 'password/forgot', title: 'Reset your password', intro: 'Give the address of your account: if it has one, a link to choose a new password is on its way.', fields: '<label>E-mail address <input name="email" type="email" autocomplete="email" required></label>', button: 'Send me a link', done: 'If an account has this address, a message is on its way. The link in it works for a short time.' }
} as const satisfies Record<string, Mode>

type ModeName = keyof typeof MODES

const STYLE = 'body{font-family:system-ui,sans-serif;line-height:1.5;max-width:32em;margin:2em auto;padding:0 1em}' +
  'label{display:block;margin:.75em 0}input{display:block;width:100%;padding:.4em;box-sizing:border-box}' +
  'button{margin-top:1em;padding:.5em 1em}#outcome{font-weight:bold}'

// The token is read once, then taken off the address bar and out of the history; it is sent
// only in the body of the POST, and only when the button is pressed.
const SCRIPT = `(() => {
  const form = document.getElementById('form')
  const out = document.getElementById('outcome')
  const token = new URLSearchParams(location.search).get('token')
  if (token !== null) history.replaceState(null, '', location.pathname)
  const mode = form.dataset.mode
  if (mode !== 'forgot-password' && (token === null || token === '')) {
    out.textContent = 'This link is incomplete: open the link from the message again.'
    form.hidden = true
    return
  }
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    const fields = form.elements
    let body = { token }
    if (mode === 'reset-password') {
      if (fields.newPassword.value !== fields.repeat.value) { out.textContent = 'The two passwords differ.'; return }
      body = { token, newPassword: fields.newPassword.value }
    } else if (mode === 'forgot-password') {
      body = { email: fields.email.value }
    }
    const button = form.querySelector('button')
    button.disabled = true
    out.textContent = 'Sending\\u2026'
    try {
      const res = await fetch(new URL('../api/auth/' + form.dataset.endpoint, location.href), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        credentials: 'omit',
        cache: 'no-store',
        referrerPolicy: 'no-referrer'
      })
      if (res.ok) {
        out.textContent = form.dataset.done
        form.hidden = true
        return
      }
      const error = await res.json().catch(() => null)
      out.textContent = error !== null && typeof error.message === 'string' ? error.message : 'Something went wrong (' + res.status + ').'
    } catch {
      out.textContent = 'The service could not be reached; try again.'
    } finally {
      button.disabled = false
    }
  })
})()`

const sha256 = (s: string): string => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`

export const ACCOUNT_PAGE_CSP = [
  "default-src 'none'", `script-src ${sha256(SCRIPT)}`, `style-src ${sha256(STYLE)}`, "connect-src 'self'",
  "form-action 'none'", "frame-ancestors 'none'", "base-uri 'none'"
].join('; ')

function render (product: string, name: ModeName): string {
  const m: Mode = MODES[name]
  const e = escapeHtml
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${e(m.title)} · ${e(product)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<h1>${e(m.title)}</h1>
<p>${e(m.intro)}</p>
<form id="form" data-mode="${name}" data-endpoint="${m.endpoint}" data-done="${e(m.done)}">
${m.fields}
<button type="submit">${e(m.button)}</button>
</form>
<p id="outcome" role="status" aria-live="polite"></p>
<noscript><p>This page needs JavaScript to send your request.</p></noscript>
<p><small>${e(product)}</small></p>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`
}

/** Kept out of the OpenAPI document: pages, not API. */
const hidden = { hide: true } as FastifySchema

const PAGES: Array<{ path: string, mode: (hasToken: boolean) => ModeName }> = [
  { path: ACCOUNT_PAGES.verifyEmail, mode: () => 'verify-email' },
  { path: ACCOUNT_PAGES.resetPassword, mode: (hasToken) => hasToken ? 'reset-password' : 'forgot-password' },
  { path: ACCOUNT_PAGES.confirmEmail, mode: () => 'confirm-email' },
  { path: ACCOUNT_PAGES.undoEmailChange, mode: () => 'undo-email-change' }
]

const accountPages: FastifyPluginAsync = async (app) => {
  const product = app.config.mail.productName
  const html = new Map((Object.keys(MODES) as ModeName[]).map((name) => [name, render(product, name)]))

  for (const page of PAGES) {
    // GET also answers HEAD (Fastify's exposeHeadRoutes): the same headers, no body.
    app.get(page.path, { schema: hidden }, async (request, reply) => {
      const token = (request.query as Record<string, unknown> | undefined)?.token
      const hasToken = typeof token === 'string' && token !== ''
      return reply
        .type('text/html; charset=utf-8')
        .header('content-security-policy', ACCOUNT_PAGE_CSP)
        .header('referrer-policy', 'no-referrer')
        .header('cache-control', 'no-store')
        .header('x-robots-tag', 'noindex')
        .header('x-content-type-options', 'nosniff')
        .send(html.get(page.mode(hasToken)))
    })
  }
}

export default accountPages
