/**
 * The outbox repository on a database file shared by two connections (two instances): a claim
 * is one conditional UPDATE, so a message is held by one claimant at a time; a claim that ran
 * out is taken over, and the former holder can then record nothing for it.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { openDatabase, type OpenDatabase } from '../../db/client.js'
import { runMigrations } from '../../db/migrate.js'
import { createRepositories } from '../../db/repositories/index.js'
import { createOutboxRepository } from '../../db/repositories/outbox.js'
import { loadConfig } from '../../src/config.js'
import { runHousekeeping } from '../../src/housekeeping.js'
import { TEST_ENV } from '../support/app.js'

function open (t: Test, path: string): OpenDatabase {
  const opened = openDatabase({ path })
  t.teardown(() => opened.sqlite.close())
  return opened
}

const message = (i: number) => ({ kind: 'password_changed', recipient: `u${i}@example.test`, subject: 's', text: 't', html: 'h', now: new Date(1_000) })

t.test('two instances never hold one message at once; an expired claim moves to the other, and its former holder records nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-db-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'auth.db')
  const a = open(t, path)
  runMigrations(a.db)
  const b = open(t, path)
  const outboxA = createOutboxRepository(a.db)
  const outboxB = createOutboxRepository(b.db)
  a.db.transaction((tx) => { for (let i = 0; i < 6; i++) outboxA.enqueue(tx, message(i)) })

  const now = new Date(2_000)
  const until = new Date(62_000)
  const [byA, byB] = [await outboxA.claim('A', now, until, 4), await outboxB.claim('B', now, new Date(200_000), 4)]
  t.equal(byA.length, 4)
  t.equal(byB.length, 2)
  t.same(new Set([...byA, ...byB].map((m) => m.id)).size, 6, 'disjoint: every message held once')
  t.same(await outboxB.claim('B', new Date(61_999), until, 10), [], 'nothing is free while the claims last')

  // A's claims run out: B takes them over; A's late outcome no longer counts.
  const takenOver = await outboxB.claim('B', new Date(62_000), new Date(122_000), 10)
  t.same(takenOver.map((m) => m.id).sort(), byA.map((m) => m.id).sort())
  t.same(takenOver.map((m) => m.attempts), [2, 2, 2, 2], 'each claim counts an attempt')
  t.equal(await outboxA.markSent(byA[0]!.id, 'A', new Date(62_500)), false)
  t.equal(await outboxA.markFailed(byA[1]!.id, 'A', 'late', null), false)
  t.equal(await outboxB.markSent(byA[0]!.id, 'B', new Date(62_500)), true)
  t.equal(await outboxB.countPending(), 5)
})

t.test('enqueue outside a transaction is refused; inside one it rolls back with it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-db-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const a = open(t, join(dir, 'auth.db'))
  runMigrations(a.db)
  const outbox = createOutboxRepository(a.db)
  t.throws(() => outbox.enqueue(a.db, message(1)), /inside the transaction/)
  t.throws(() => a.db.transaction((tx) => { outbox.enqueue(tx, message(2)); throw new Error('rollback') }))
  t.equal(await outbox.countPending(), 0)
  // A raw better-sqlite3 transaction on the same connection works too (the sessions repository's kind).
  a.sqlite.transaction(() => { outbox.enqueue(a.db, message(3)) })()
  t.equal(await outbox.countPending(), 1)
})

t.test('housekeeping deletes sent messages older than AUDIT_RETENTION and keeps the rest', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-db-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const a = open(t, join(dir, 'auth.db'))
  runMigrations(a.db)
  const repos = createRepositories(a.db)
  const config = loadConfig({ ...TEST_ENV, AUDIT_RETENTION: '30d', HOUSEKEEPING_BATCH_SIZE: '2' })
  const day = 86_400_000
  a.db.transaction((tx) => { for (let i = 0; i < 6; i++) repos.outbox.enqueue(tx, message(i)) })
  const claimed = await repos.outbox.claim('A', new Date(2_000), new Date(60_000), 6)
  // Five sent (three long ago, two recently), one dead.
  for (const [i, m] of claimed.entries()) {
    if (i < 5) await repos.outbox.markSent(m.id, 'A', new Date(i < 3 ? 10 * day : 50 * day))
    else await repos.outbox.markFailed(m.id, 'A', 'refused', null)
  }
  const result = await runHousekeeping({ repos, config }, new Date(60 * day))
  t.equal(result.sentMail, 3)
  t.same(a.sqlite.prepare('SELECT state, count(*) AS n FROM mail_outbox GROUP BY state ORDER BY state').all(), [{ state: 'dead', n: 1 }, { state: 'sent', n: 2 }])
})
