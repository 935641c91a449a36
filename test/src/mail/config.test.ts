/**
 * Mail settings: off without any, each transport's settings required and named when missing,
 * and the `log` transport refused in production, by the real entry point, in one line.
 */
import t, { type Test } from 'tap'
import { ConfigError, loadConfig } from '../../../src/config.js'
import { runToExit, serverEnv } from '../../support/process.js'
import { TEST_ENV } from '../../support/app.js'

/** The one-line ConfigError `env` is refused with. */
function refusal (env: Record<string, string>): string {
  try {
    loadConfig({ ...TEST_ENV, ...env })
  } catch (err) {
    if (err instanceof ConfigError && !err.message.includes('\n')) return err.message
    throw err
  }
  return 'accepted'
}
const refused = (env: Record<string, string>, pattern: RegExp) => async (t: Test) => { t.match(refusal(env), pattern) }

t.test('no mail setting: mail is off', async (t) => {
  t.equal(loadConfig(TEST_ENV).mail.transport, 'none')
})

t.test('each transport names the setting it lacks', async (t) => {
  t.test('smtp without SMTP_URL', refused({ MAIL_TRANSPORT: 'smtp', MAIL_FROM: 'a@example.test' }, /^MAIL_TRANSPORT=smtp needs SMTP_URL/))
  t.test('smtp without MAIL_FROM', refused({ MAIL_TRANSPORT: 'smtp', SMTP_URL: 'smtp://127.0.0.1:2525' }, /^MAIL_TRANSPORT=smtp needs MAIL_FROM/))
  t.test('SMTP_URL not an smtp URL, without echoing it', refused({ MAIL_TRANSPORT: 'smtp', MAIL_FROM: 'a@example.test', SMTP_URL: 'http://user:hunter2@x' }, /^SMTP_URL must be an smtp:\/\/ or smtps:\/\/ URL$/))
  t.test('webhook without its URL', refused({ MAIL_TRANSPORT: 'webhook', NOTIFY_WEBHOOK_SECRET: 'x'.repeat(32) }, /^MAIL_TRANSPORT=webhook needs NOTIFY_WEBHOOK_URL/))
  t.test('webhook without its secret', refused({ MAIL_TRANSPORT: 'webhook', NOTIFY_WEBHOOK_URL: 'https://hooks.example.test/mail' }, /^MAIL_TRANSPORT=webhook needs NOTIFY_WEBHOOK_SECRET/))
  t.test('an unknown transport', refused({ MAIL_TRANSPORT: 'pigeon' }, /^MAIL_TRANSPORT: 'pigeon' is not allowed; use one of none, smtp, webhook, log/))
  t.test('a timeout out of range, said in its unit', refused({ MAIL_SEND_TIMEOUT: '50ms' }, /^MAIL_SEND_TIMEOUT: '50ms' is not allowed; use a duration from 100ms to 600000ms/))
  t.test('SMTP_URL alone', refused({ SMTP_URL: 'smtp://127.0.0.1:2525' }, /^SMTP_URL is set but MAIL_TRANSPORT is not/))
  t.test('a templates directory that does not exist', refused({ MAIL_TRANSPORT: 'log', MAIL_TEMPLATES_DIR: '/nonexistent/templates' }, /^MAIL_TEMPLATES_DIR: no directory/))
})

t.test('MAIL_TRANSPORT=log is refused in production, naming MAIL_TRANSPORT', async (t) => {
  const production = { NODE_ENV: 'production', DATABASE_URL: 'file:/tmp/unused.db', PUBLIC_URL: 'https://auth.example.test', MAIL_TRANSPORT: 'log' }
  t.throws(() => loadConfig(production), /MAIL_TRANSPORT=log/)
  const smtp = { ...production, MAIL_TRANSPORT: 'smtp', SMTP_URL: 'smtps://u:p@mail.example.test', MAIL_FROM: 'a@example.test' }
  t.doesNotThrow(() => loadConfig(smtp), 'smtp is accepted')
  t.throws(() => loadConfig({ ...smtp, APP_URL: 'http://app.example.test' }), /APP_URL .* must be https/, 'mailed links over plain http')
  const webhook = { ...production, MAIL_TRANSPORT: 'webhook', NOTIFY_WEBHOOK_URL: 'https://hooks.example.test/mail' }
  t.throws(() => loadConfig({ ...webhook, NOTIFY_WEBHOOK_SECRET: 'short' }), /NOTIFY_WEBHOOK_SECRET must be at least 32 bytes/)
  t.throws(() => loadConfig({ ...webhook, NOTIFY_WEBHOOK_URL: 'http://hooks.example.test/mail', NOTIFY_WEBHOOK_SECRET: 'x'.repeat(32) }), /NOTIFY_WEBHOOK_URL must be https/)
})

t.test('the service refuses to start with MAIL_TRANSPORT=log in production: exit 78 and one line', async (t) => {
  const { code, stderr } = await runToExit(serverEnv('/tmp/never-opened.db', { NODE_ENV: 'production', PUBLIC_URL: 'https://auth.example.test', RATE_LIMIT_ENABLED: 'true', ARGON2_MEMORY_KIB: '19456', ARGON2_TIME_COST: '2', MAIL_TRANSPORT: 'log' }))
  t.equal(code, 78)
  const lines = stderr.trim().split('\n')
  t.equal(lines.length, 1, stderr)
  t.match(lines[0], /^auth-service: refusing to start with NODE_ENV=production: MAIL_TRANSPORT=log/)
})
