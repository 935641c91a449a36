/** Templates: values escaped in HTML only, subjects kept to one line, overrides from a directory checked at load. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { loadTemplates, renderMail } from '../../../src/mail/templates.js'

const context = { product: 'Ex <ample>', linkBase: 'https://app.example.test' }

t.test('values are HTML-escaped in the HTML part, kept as they are in the text part', async (t) => {
  const link = 'https://app.example.test/reset?token=a&b="><script>alert(1)</script>\''
  const m = renderMail(loadTemplates(), context, 'password_reset', 'x@example.test', { link, expiresInMinutes: 30 })
  t.match(m.text, link)
  t.notMatch(m.html, '<script>')
  t.match(m.html, 'href="https://app.example.test/reset?token=a&amp;b=&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&#39;"')
  t.match(m.html, 'Ex &lt;ample&gt;')
  t.equal(m.subject, 'Reset your Ex <ample> password')
})

t.test('a line break in a value never reaches the subject header', async (t) => {
  const m = renderMail(loadTemplates(), { ...context, product: 'Ex\r\nBcc: victim@example.test' }, 'password_changed', 'x@example.test', {})
  t.notMatch(m.subject, /[\r\n]/)
})

t.test('a missing value is an error, not a hole in the message', async (t) => {
  t.throws(() => renderMail(loadTemplates(), context, 'verify_email', 'x@example.test', {}), /no value for \{\{link\}\}/)
})

t.test('MAIL_TEMPLATES_DIR replaces the parts it has and is checked when loaded', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mail-templates-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'verify_email.subject.txt'), 'Welcome to {{product}}\n')
  writeFileSync(join(dir, 'verify_email.html'), '<p>Hello {{recipient}}: <a href="{{link}}">go</a></p>')
  const m = renderMail(loadTemplates(dir), context, 'verify_email', '<b>@example.test', { link: 'https://app.example.test/v?token=1&2' })
  t.equal(m.subject, 'Welcome to Ex <ample>')
  t.equal(m.html, '<p>Hello &lt;b&gt;@example.test: <a href="https://app.example.test/v?token=1&amp;2">go</a></p>')
  t.match(m.text, 'Confirm that <b>@example.test is your address', 'the built-in text part stands in')

  writeFileSync(join(dir, 'password_changed.txt'), 'Your new password is {{password}}')
  t.throws(() => loadTemplates(dir), /MAIL_TEMPLATES_DIR: .*password_changed\.txt: \{\{password\}\} is not a variable of password_changed/)
})
