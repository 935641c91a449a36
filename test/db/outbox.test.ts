/**
 * The outbox repository on a database file shared by two connections (two instances): a claim
 * is one conditional UPDATE, so a message is held by one claimant at a time; a claim that ran
 * out is taken over, and the former holder can then record nothing for it.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { openDatabase } from '../../db/client.js'
import { runMigrations } from '../../db/migrate.js'
import { createRepositories, type Repositories } from '../../db/repositories/index.js'
import { createPgRepositories } from '../../db/repositories/pg/index.js'
import { openPostgres } from '../../db/pg/client.js'
import { runPgMigrations } from '../../db/pg/migrate.js'
import { loadConfig } from '../../src/config.js'
import { runHousekeeping } from '../../src/housekeeping.js'
import { TEST_DATABASE, TEST_ENV } from '../support/app.js'
import { freshPostgresDatabase, queryPostgres } from '../support/pg.js'

interface Shared {
  /** Two instances' repositories (two connections or pools) on one database. */
  a: Repositories
  b: Repositories
  query: (sql: string) => Promise<Array<Record<string, unknown>>>
}

/** One database of the pass's backend (TEST_DATABASE), opened twice, as two instances would. */
async function shared (t: Test): Promise<Shared> {
  if (TEST_DATABASE === 'postgres') {
    const { url } = await freshPostgresDatabase(t)
    const open = () => {
      const opened = openPostgres({ url, poolSize: 4, statementTimeoutMs: 10_000, ssl: 'disable' })
      t.teardown(() => opened.pool.end())
      return opened
    }
    const a = open()
    await runPgMigrations(a.pool)
    return { a: createPgRepositories(a.db), b: createPgRepositories(open().db), query: async (sql) => await queryPostgres(url, sql) }
  }
  const dir = mkdtempSync(join(tmpdir(), 'outbox-db-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'auth.db')
  const open = () => {
    const opened = openDatabase({ path })
    t.teardown(() => opened.sqlite.close())
    return opened
  }
  const a = open()
  runMigrations(a.db)
  return { a: createRepositories(a.db), b: createRepositories(open().db), query: async (sql) => a.sqlite.prepare(sql.replace(/::int/g, '')).all() as Array<Record<string, unknown>> }
}

const message = (i: number) => ({ kind: 'password_changed', recipient: `u${i}@example.test`, subject: 's', text: 't', html: 'h', now: new Date(1_000) })

t.test('two instances never hold one message at once; an expired claim moves to the other, and its former holder records nothing', async (t) => {
  const { a, b } = await shared(t)
  const outboxA = a.outbox
  const outboxB = b.outbox
  await outboxA.enqueueAlone(() => { for (let i = 0; i < 6; i++) outboxA.enqueue(message(i)) })

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
  const { a } = await shared(t)
  const outbox = a.outbox
  t.throws(() => outbox.enqueue(message(1)), /inside the transaction/)
  await t.rejects(outbox.enqueueAlone(() => { outbox.enqueue(message(2)); throw new Error('rollback') }), /rollback/)
  t.equal(await outbox.countPending(), 0)
  await outbox.enqueueAlone(() => { outbox.enqueue(message(3)) })
  t.equal(await outbox.countPending(), 1)
})

t.test('a message enqueued in the alongside of a repository write commits with it and wakes the worker only after the commit', async (t) => {
  const { a } = await shared(t)
  const user = await a.users.insert({ id: 'u1', username: 'alice', usernameKey: 'alice', passwordHash: 'h', roles: ['user'], now: new Date(1_000) })
  let pendingWhenWoken = -1
  let woken = 0
  a.outbox.onEnqueue(() => { woken++; void a.outbox.countPending().then((n) => { pendingWhenWoken = n }) })
  const started = await a.sessions.start({ id: 's1', userId: user!.id, credentialEpoch: 0, userAgent: null, ip: null, amr: ['pwd'], now: new Date(1_000), expiresAt: new Date(9_000_000), tokenHash: Buffer.alloc(32), tokenExpiresAt: new Date(9_000_000) },
    () => { a.outbox.enqueue(message(7)) })
  t.not(started, null)
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(woken, 1)
  t.equal(pendingWhenWoken, 1, 'the woken worker sees the committed message')
  // The same write refused (a stale credential epoch): nothing is enqueued.
  const refused = await a.sessions.start({ id: 's2', userId: user!.id, credentialEpoch: 5, userAgent: null, ip: null, amr: ['pwd'], now: new Date(1_000), expiresAt: new Date(9_000_000), tokenHash: Buffer.alloc(32), tokenExpiresAt: new Date(9_000_000) },
    () => { a.outbox.enqueue(message(8)) })
  t.equal(refused, null)
  t.equal(await a.outbox.countPending(), 1)
})

t.test('housekeeping deletes sent messages older than AUDIT_RETENTION and keeps the rest', async (t) => {
  const { a: repos, query } = await shared(t)
  const config = loadConfig({ ...TEST_ENV, AUDIT_RETENTION: '30d', HOUSEKEEPING_BATCH_SIZE: '2' })
  const day = 86_400_000
  await repos.outbox.enqueueAlone(() => { for (let i = 0; i < 6; i++) repos.outbox.enqueue(message(i)) })
  const claimed = await repos.outbox.claim('A', new Date(2_000), new Date(60_000), 6)
  // Five sent (three long ago, two recently), one dead.
  for (const [i, m] of claimed.entries()) {
    if (i < 5) await repos.outbox.markSent(m.id, 'A', new Date(i < 3 ? 10 * day : 50 * day))
    else await repos.outbox.markFailed(m.id, 'A', 'refused', null)
  }
  const result = await runHousekeeping({ repos, config }, new Date(60 * day))
  t.equal(result.sentMail, 3)
  t.same(await query('SELECT state, count(*)::int AS n FROM mail_outbox GROUP BY state ORDER BY state'), [{ state: 'dead', n: 1 }, { state: 'sent', n: 2 }])
})
