/**
 * Crash consistency: the real server (src/server.ts) runs as a child process on a SQLite file;
 * several clients drive registrations, logins, refreshes and logouts over HTTP; the process is
 * killed with SIGKILL at a random moment mid-load and started again on the same file. Each
 * round shows:
 *
 * - `PRAGMA integrity_check` is `ok` and `PRAGMA foreign_key_check` finds nothing;
 * - no session is half-rotated: every live session has exactly one unspent refresh token, and
 *   every spent token points at a successor that exists;
 * - no acknowledged registration (201 received) is lost: each such account logs in;
 * - the refresh token a client was last given (200 received) works, unless the client's logout
 *   of that session was acknowledged (then it is refused). A refresh or logout whose answer was
 *   lost in the crash may or may not have happened: the token last given still works (a lost
 *   rotation is answered through the reuse interval, as for any lost response), or the session
 *   was cleanly ended by the lost logout.
 *
 * Kill points come from a seeded PRNG (CRASH_SEED, printed); CRASH_ROUNDS rounds (default 4).
 * This is a process crash, not a power cut: the OS still writes what SQLite handed it. With
 * DATABASE_SYNCHRONOUS=FULL (the default) a commit is also on disk before it is acknowledged.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import t, { type Test } from 'tap'
import { serverEnv, startServer, type ServerProcess } from '../support/process.js'

const SEED = Number(process.env.CRASH_SEED ?? 20261101)
const ROUNDS = Number(process.env.CRASH_ROUNDS ?? 4)
const CLIENTS = 4
const PASSWORD = 'crash test passphrase 2026'

/** mulberry32: a small seeded PRNG, so the kill points of a run can be replayed. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

type SessionState = 'live' | 'ended' | 'logout-unknown'
interface TrackedSession { token: string, state: SessionState, owner: number, /** a refresh was sent and its answer not (yet) received */ pending?: boolean }

interface Ledger {
  users: string[]
  sessions: TrackedSession[]
}

async function post (base: string, path: string, body: unknown): Promise<{ status: number, json: any }> {
  const res = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const text = await res.text()
  return { status: res.status, json: text === '' ? undefined : JSON.parse(text) }
}

/** One client: random operations until the server goes away. Only answers received count. */
async function client (base: string, id: number, round: number, random: () => number, ledger: Ledger, acked: { n: number }): Promise<void> {
  let i = 0
  for (;;) {
    i++
    const mine = ledger.sessions.filter((s) => s.owner === id && s.state === 'live')
    const r = random()
    try {
      if (r < 0.3 || ledger.users.length === 0) {
        const username = `r${round}c${id}n${i}`
        const res = await post(base, '/api/auth/register', { username, password: PASSWORD })
        if (res.status !== 201) throw new Error(`register answered ${res.status}`)
        ledger.users.push(username)
      } else if (r < 0.45 || mine.length === 0) {
        const username = ledger.users[Math.floor(random() * ledger.users.length)]!
        const res = await post(base, '/api/auth/login', { username, password: PASSWORD, transport: 'body' })
        if (res.status !== 200) throw new Error(`login answered ${res.status}`)
        ledger.sessions.push({ token: res.json.refreshToken, state: 'live', owner: id })
      } else if (r < 0.95) {
        const session = mine[Math.floor(random() * mine.length)]!
        session.pending = true
        const res = await post(base, '/api/auth/refresh', { refreshToken: session.token })
        if (res.status !== 200) throw new Error(`refresh answered ${res.status} ${JSON.stringify(res.json)}`)
        session.token = res.json.refreshToken
        session.pending = false
      } else {
        const session = mine[Math.floor(random() * mine.length)]!
        session.state = 'logout-unknown' // until the 204 arrives
        const res = await post(base, '/api/auth/logout', { refreshToken: session.token })
        if (res.status !== 204) throw new Error(`logout answered ${res.status}`)
        session.state = 'ended'
      }
      acked.n++
    } catch (err) {
      // The server was killed: this request's answer is lost. Anything else is a real failure.
      if (err instanceof TypeError && /fetch failed/.test(err.message)) return
      throw err
    }
  }
}

/** Checks the file directly, with the server dead, before anything repairs it. */
function checkDatabaseFile (t: Test, path: string, label: string): void {
  const db = new Database(path)
  try {
    t.equal(db.pragma('integrity_check', { simple: true }), 'ok', `${label}: integrity_check ok`)
    t.same(db.pragma('foreign_key_check'), [], `${label}: no dangling foreign keys`)
    const forked = db.prepare(`
      SELECT s.id, (SELECT count(*) FROM refresh_tokens r WHERE r.session_id = s.id AND r.spent_at IS NULL) AS unspent
      FROM sessions s WHERE s.revoked_at IS NULL AND unspent <> 1`).all()
    t.same(forked, [], `${label}: every live session has exactly one unspent refresh token`)
    const broken = db.prepare(`
      SELECT p.id FROM refresh_tokens p LEFT JOIN refresh_tokens c ON c.id = p.successor_id AND c.parent_id = p.id
      WHERE p.spent_at IS NOT NULL AND c.id IS NULL`).all()
    t.same(broken, [], `${label}: every spent token has its successor`)
  } finally {
    db.close()
  }
}

/** What survived the crash, through the restarted server. */
async function verify (t: Test, server: ServerProcess, ledger: Ledger, label: string): Promise<void> {
  // Sessions first: a refresh lost in the crash is answered through the reuse interval, which
  // runs from the moment of the crash.
  const counts = { live: 0, lostRefresh: 0, ended: 0, unknownEnded: 0, unknownLive: 0 }
  for (const session of ledger.sessions) {
    const res = await post(server.base, '/api/auth/refresh', { refreshToken: session.token })
    if (session.state === 'live') {
      t.equal(res.status, 200, `${label}: the last token given for a live session works${session.pending === true ? ' (its last refresh was in flight at the kill)' : ''}`)
      if (res.status === 200) session.token = res.json.refreshToken
      counts.live++
      if (session.pending === true) counts.lostRefresh++
      session.pending = false
    } else if (session.state === 'ended') {
      t.equal(res.status, 401, `${label}: an acknowledged logout stays logged out`)
      t.equal(res.json?.code, 'SESSION_REVOKED')
      counts.ended++
    } else if (res.status === 200) {
      // The logout never reached the database: the session goes on.
      session.token = res.json.refreshToken
      session.state = 'live'
      counts.unknownLive++
    } else {
      t.equal(res.status, 401, `${label}: a logout lost in the crash either happened or not`)
      t.equal(res.json?.code, 'SESSION_REVOKED', `${label}: ... and if it happened, the session was cleanly ended`)
      session.state = 'ended'
      counts.unknownEnded++
    }
  }
  let lost = 0
  for (let i = 0; i < ledger.users.length; i += 8) {
    const batch = ledger.users.slice(i, i + 8)
    const answers = await Promise.all(batch.map(async (username) => await post(server.base, '/api/auth/login', { username, password: PASSWORD, transport: 'body' })))
    for (const [j, a] of answers.entries()) if (a.status !== 200) { lost++; t.fail(`${label}: acknowledged account ${batch[j]!} cannot log in (${a.status})`) }
  }
  t.equal(lost, 0, `${label}: all ${ledger.users.length} acknowledged registrations survived`)

  t.comment(`${label}: ${ledger.users.length} accounts, sessions live ${counts.live} (refresh in flight at the kill: ${counts.lostRefresh}), ended ${counts.ended}, lost logouts done ${counts.unknownEnded} / not done ${counts.unknownLive}`)
}

t.test(`SIGKILL mid-load, ${ROUNDS} rounds: no lost registration, no half-rotated session, integrity ok`, async (t) => {
  t.comment(`crash seed ${SEED} (set CRASH_SEED to replay other kill points)`)
  const random = prng(SEED)
  const dir = mkdtempSync(join(tmpdir(), 'auth-crash-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'auth.db')
  const env = serverEnv(path, {
    // A lost answer to a refresh is exactly what the reuse interval is for; make it cover the
    // time from the crash to the check.
    REFRESH_REUSE_INTERVAL: '60s'
  })
  const ledger: Ledger = { users: [], sessions: [] }
  let server: ServerProcess | undefined
  t.teardown(async () => { await server?.kill() })

  for (let round = 1; round <= ROUNDS; round++) {
    server = await startServer(env)
    if (round > 1) await verify(t, server, ledger, `after crash ${round - 1}`)

    const acked = { n: 0 }
    const minAcked = 15 + Math.floor(random() * 40)
    const extraDelay = Math.floor(random() * 400)
    const clients = Array.from({ length: CLIENTS }, async (_, id) => { await client(server!.base, id, round, prng(SEED + round * 100 + id), ledger, acked) })
    // Kill once some work is acknowledged, after a random extra delay: mid-request, every time.
    const started = Date.now()
    while (acked.n < minAcked && Date.now() - started < 20_000) await new Promise((resolve) => setTimeout(resolve, 5))
    await new Promise((resolve) => setTimeout(resolve, extraDelay))
    const ackedAtKill = acked.n
    const exit = await server.kill('SIGKILL')
    await Promise.all(clients)
    t.equal(exit.signal, 'SIGKILL', `round ${round}: killed by SIGKILL after ${ackedAtKill} acknowledged operations (+${extraDelay} ms)`)
    t.ok(ackedAtKill >= minAcked, `round ${round}: the load was running when the kill came`)
    checkDatabaseFile(t, path, `round ${round}`)
  }

  server = await startServer(env)
  await verify(t, server, ledger, `after crash ${ROUNDS}`)
  // A clean stop still works on the recovered file.
  const stop = await server.kill('SIGTERM')
  t.equal(stop.code, 0, 'SIGTERM: graceful exit 0')
  server = undefined
  checkDatabaseFile(t, path, 'after a clean stop')
})
