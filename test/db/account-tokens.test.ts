/**
 * Account tokens on the pass's backend: a newer token of the same purpose voids the older one,
 * the mail that carries a token commits or rolls back with it, expired tokens are not found and
 * are pruned, and a deleted account takes its tokens with it.
 */
import t, { type Test } from 'tap'
import { newAccountToken, hashAccountToken } from '../../src/auth/account-tokens.js'
import { buildTestApp, register } from '../support/app.js'
import { count } from '../support/db.js'
import { queryPostgres } from '../support/pg.js'

const MIN = 60_000

async function setUp (t: Test) {
  const app = await buildTestApp(t)
  const user = (await register(app, 'tokenowner')).json() as { id: string }
  return { app, userId: user.id }
}

t.test('a token is found by its digest and purpose until it expires; a newer one voids it', async (t) => {
  const { app, userId } = await setUp(t)
  const now = new Date()
  const first = newAccountToken()
  const base = { userId, purpose: 'reset_password' as const, email: null, passwordStamp: now, now, expiresAt: new Date(now.getTime() + 30 * MIN) }
  await app.repos.accountTokens.issue({ ...base, tokenHash: first.tokenHash })
  t.equal((await app.repos.accountTokens.find(first.tokenHash, 'reset_password', now))?.userId, userId)
  t.equal(await app.repos.accountTokens.find(first.tokenHash, 'verify_email', now), null, 'another purpose finds nothing')
  t.equal(await app.repos.accountTokens.find(first.tokenHash, 'reset_password', new Date(now.getTime() + 30 * MIN)), null, 'expired')

  const verify = newAccountToken()
  await app.repos.accountTokens.issue({ ...base, purpose: 'verify_email', email: 'a@example.com', tokenHash: verify.tokenHash })
  const second = newAccountToken()
  await app.repos.accountTokens.issue({ ...base, tokenHash: second.tokenHash })
  t.equal(await app.repos.accountTokens.find(first.tokenHash, 'reset_password', now), null, 'the older reset token is void')
  t.ok(await app.repos.accountTokens.find(second.tokenHash, 'reset_password', now), 'the newer one is live')
  t.equal((await app.repos.accountTokens.find(verify.tokenHash, 'verify_email', now))?.email, 'a@example.com', 'another purpose is untouched')

  t.equal(await app.repos.accountTokens.pruneExpired(new Date(now.getTime() + 30 * MIN)), 2)
  t.equal(await count(app, 'SELECT count(*) FROM account_tokens'), 0)
})

t.test('the mail that carries a token commits with it, and a failure rolls both back', async (t) => {
  const { app, userId } = await setUp(t)
  const now = new Date()
  const mail = { kind: 'password_reset', recipient: 'a@example.com', subject: 's', text: 't', html: 'h', now }
  const base = { userId, purpose: 'reset_password' as const, email: null, passwordStamp: now, now, expiresAt: new Date(now.getTime() + MIN) }
  const before = await count(app, 'SELECT count(*) FROM mail_outbox')

  const kept = newAccountToken()
  await app.repos.accountTokens.issue({ ...base, tokenHash: kept.tokenHash }, () => { app.repos.outbox.enqueue(mail) })
  t.equal(await count(app, 'SELECT count(*) FROM mail_outbox'), before + 1)

  const lost = newAccountToken()
  await t.rejects(app.repos.accountTokens.issue({ ...base, tokenHash: lost.tokenHash }, () => {
    app.repos.outbox.enqueue(mail)
    throw new Error('template failed')
  }), /template failed/)
  t.equal(await count(app, 'SELECT count(*) FROM mail_outbox'), before + 1, 'no message without its token')
  t.equal(await app.repos.accountTokens.find(lost.tokenHash, 'reset_password', now), null, 'no token without its message')
  t.ok(await app.repos.accountTokens.find(kept.tokenHash, 'reset_password', now), 'the failed issue voided nothing')
})

t.test('deleting the account deletes its tokens', async (t) => {
  const { app, userId } = await setUp(t)
  const now = new Date()
  const token = newAccountToken()
  await app.repos.accountTokens.issue({ userId, purpose: 'verify_email', email: 'a@example.com', tokenHash: token.tokenHash, passwordStamp: now, now, expiresAt: new Date(now.getTime() + MIN) })
  t.equal(await count(app, 'SELECT count(*) FROM account_tokens WHERE user_id = ?', userId), 1)
  if (app.database.kind === 'sqlite') app.sqlite.prepare('DELETE FROM users WHERE id = ?').run(userId)
  else await queryPostgres(app.config.databaseUrl, 'DELETE FROM users WHERE id = $1', [userId])
  t.equal(await count(app, 'SELECT count(*) FROM account_tokens WHERE user_id = ?', userId), 0)
})

t.test('a token is 43 base64url characters; anything else has no digest', async (t) => {
  const { token, tokenHash } = newAccountToken()
  t.match(token, /^[A-Za-z0-9_-]{43}$/)
  t.same(hashAccountToken(token), tokenHash)
  t.equal(hashAccountToken(token.slice(1)), null)
  t.equal(hashAccountToken(`${token.slice(1)}=`), null)
  t.equal(hashAccountToken(''), null)
})
