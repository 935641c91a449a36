/**
 * The refresh-token derivation secret (`server_secrets`) at rest: sealed under
 * KEY_ENCRYPTION_KEY exactly as the private signing keys are, sealed in place when the key is
 * set on an existing database, and the sessions of before go on refreshing across the upgrade
 * and restarts.
 */
import { readFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { openSealed } from '../../src/keys/signing-key.js'
import { login, refreshWithBody, register, testConfig } from '../support/app.js'

const KEK = Buffer.alloc(32, 0x5a)
const NAME = 'refresh-token-derivation'

/** The stored value of the secret, read straight from the file. */
function storedSecret (path: string): Buffer {
  const db = new Database(path, { readonly: true })
  try {
    return (db.prepare('SELECT value FROM server_secrets WHERE name = ?').pluck().get(NAME) as Buffer)
  } finally {
    db.close()
  }
}

/** Every byte the database keeps on disk (the file, and a WAL if one is left). */
function diskBytes (path: string): Buffer {
  return Buffer.concat([path, `${path}-wal`].filter((p) => existsSync(p)).map((p) => readFileSync(p)))
}

t.test('with KEY_ENCRYPTION_KEY set, the secret is sealed from the start and never written in clear', async (t) => {
  const path = join(t.testdir(), 'auth.db')
  const app = await buildApp(testConfig({ DATABASE_URL: `file:${path}`, KEY_ENCRYPTION_KEY: KEK.toString('base64') }))
  await register(app)
  const session = await login(app, { transport: 'body' })
  t.equal((await refreshWithBody(app, session.refreshToken)).statusCode, 200)
  await app.close()

  const stored = storedSecret(path)
  t.match(stored.toString('latin1'), /^enc:v1:/, 'the row holds a sealed value')
  const secret = openSealed(stored.toString('latin1'), `server_secret:${NAME}`, KEK)
  t.equal(secret.length, 32, 'which opens to the 32-byte secret')
  t.equal(diskBytes(path).indexOf(secret), -1, 'the clear secret is nowhere in the database file')
})

t.test('an existing clear secret is sealed at start once the key is set; sessions refresh across the upgrade and restarts', async (t) => {
  const path = join(t.testdir(), 'auth.db')
  const env = { DATABASE_URL: `file:${path}` }
  const before = await buildApp(testConfig(env))
  await register(before)
  const session = await login(before, { transport: 'body' })
  await before.close()
  const clear = storedSecret(path)
  t.equal(clear.length, 32, 'without the key the secret is stored as it is')

  const sealedEnv = { ...env, KEY_ENCRYPTION_KEY: KEK.toString('base64') }
  const upgraded = await buildApp(testConfig(sealedEnv))
  const first = await refreshWithBody(upgraded, session.refreshToken)
  t.equal(first.statusCode, 200, `a session of before refreshes after the upgrade (got ${first.body})`)
  await upgraded.close()
  const stored = storedSecret(path)
  t.match(stored.toString('latin1'), /^enc:v1:/, 'the row is sealed now')
  t.same(openSealed(stored.toString('latin1'), `server_secret:${NAME}`, KEK), clear, 'the same secret, sealed')
  t.equal(diskBytes(path).indexOf(clear), -1, 'the clear secret is gone from the database file')

  const restarted = await buildApp(testConfig(sealedEnv))
  t.teardown(() => restarted.close())
  const second = await refreshWithBody(restarted, first.json().refreshToken)
  t.equal(second.statusCode, 200, 'and after a restart')
  // The first token, spent a moment ago (within REFRESH_REUSE_INTERVAL): its successors are
  // derived again from it with the secret, down to the session's current token.
  t.equal((await refreshWithBody(restarted, session.refreshToken)).json().refreshToken, second.json().refreshToken, 'the derivation chain holds across the upgrade')
})

t.test('a sealed secret without the key, or with another, refuses to start with a message naming KEY_ENCRYPTION_KEY', async (t) => {
  const path = join(t.testdir(), 'auth.db')
  const app = await buildApp(testConfig({ DATABASE_URL: `file:${path}`, KEY_ENCRYPTION_KEY: KEK.toString('base64') }))
  await app.close()
  const refused = async (env: Record<string, string>): Promise<unknown> => await buildApp(testConfig({ DATABASE_URL: `file:${path}`, ...env })).then(async (a) => { await a.close(); return null }, (err: unknown) => err)
  t.match(await refused({}), { name: 'KeyProtectionError', message: /server_secrets.*set KEY_ENCRYPTION_KEY/ }, 'no key')
  t.match(await refused({ KEY_ENCRYPTION_KEY: Buffer.alloc(32, 9).toString('base64') }),
    { name: 'KeyProtectionError', message: /server_secrets.*KEY_ENCRYPTION_KEY is not the key it was sealed with/ }, 'another key')
})
