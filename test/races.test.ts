/**
 * Concurrency: many requests in flight at once through `inject`, on an in-memory database and
 * on a real SQLite file (WAL, as in production), and on two app instances sharing one file
 * (two replicas behind a load balancer). The answers must be the ones the contract promises
 * for a single request, with no duplicate account, no forked session and no surviving token.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { bearer, buildTestApp, cookieOf, holdVerifications, login, PASSWORD, register } from './support/app.js'
import { count, rows } from './support/db.js'
import { adminSession } from './support/metrics.js'
import { sidOf } from './support/jwt.js'

const N = 50

function fileDb (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'auth-races-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return `file:${join(dir, 'auth.db')}`
}

const databases: Array<[string, (t: Test) => string]> = [
  ['in-memory', () => ':memory:'],
  ['file (WAL)', fileDb]
]

async function refreshBody (app: FastifyInstance, refreshToken: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken } })
}

for (const [name, database] of databases) {
  t.test(`${name}: ${N} parallel refreshes with one token all succeed with one identical successor, and one live session remains`, async (t) => {
    const app = await buildTestApp(t, { DATABASE_URL: database(t) })
    await register(app)
    const first = await login(app, { transport: 'body' })
    const results = await Promise.all(Array.from({ length: N }, async () => await refreshBody(app, first.refreshToken)))
    t.same(results.map((r) => r.statusCode), Array(N).fill(200), 'all 200')
    const successors = new Set(results.map((r) => r.json().refreshToken as string))
    t.equal(successors.size, 1, 'one identical new refresh token')
    const [successor] = successors
    t.not(successor, first.refreshToken)
    t.equal(new Set(results.map((r) => sidOf(r.json().accessToken))).size, 1, 'every access token names the same session')
    const sessions = await app.inject({ url: '/api/auth/sessions', headers: bearer(results[0]!.json().accessToken) })
    t.equal(sessions.json().length, 1, 'one live session')
    // The chain did not fork: exactly one unspent token in the session, and it is the successor.
    t.equal(await count(app, 'SELECT count(*) AS n FROM refresh_tokens WHERE spent_at IS NULL'), 1)
    const next = await refreshBody(app, successor!)
    t.equal(next.statusCode, 200, 'the successor rotates normally')
  })

  t.test(`${name}: ${N} parallel cookie-mode refreshes (tabs of one browser) get the same successor cookie`, async (t) => {
    const app = await buildTestApp(t, { DATABASE_URL: database(t) })
    await register(app)
    const first = await login(app)
    const results = await Promise.all(Array.from({ length: N }, async () =>
      await app.inject({ method: 'POST', url: '/api/auth/refresh', cookies: { refresh_token: first.refreshToken }, headers: { origin: 'http://localhost:3000' } })))
    t.same(results.map((r) => r.statusCode), Array(N).fill(200))
    t.equal(new Set(results.map((r) => cookieOf(r)?.value)).size, 1)
  })

  t.test(`${name}: ${N} parallel registrations of one username give exactly one 201, the rest 409`, async (t) => {
    const app = await buildTestApp(t, { DATABASE_URL: database(t) })
    // Spellings that are one account after NFKC and case folding.
    const spellings = ['carol', 'Carol', 'CAROL', 'ｃａｒｏｌ', ' carol ']
    const results = await Promise.all(Array.from({ length: N }, async (_, i) =>
      await app.inject({ method: 'POST', url: '/api/auth/register', payload: { username: spellings[i % spellings.length], password: PASSWORD } })))
    const statuses = results.map((r) => r.statusCode)
    t.equal(statuses.filter((s) => s === 201).length, 1, 'exactly one 201')
    t.equal(statuses.filter((s) => s === 409).length, N - 1, 'the rest 409')
    t.ok(results.filter((r) => r.statusCode === 409).every((r) => r.json().code === 'USERNAME_TAKEN'))
    t.equal(await count(app, "SELECT count(*) AS n FROM users WHERE username_key = 'carol'"), 1)
    t.equal((await login(app, { username: 'carol' })).res.statusCode, 200, 'the one account works')
  })

  t.test(`${name}: parallel logins of one user all succeed with distinct sessions`, async (t) => {
    // Every login in flight holds one of the account's attempts until it is answered (a
    // password is counted before it is checked): the limit must allow 20 at once.
    const app = await buildTestApp(t, { DATABASE_URL: database(t), RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: '20' })
    await register(app)
    const logins = await Promise.all(Array.from({ length: 20 }, async () => await login(app, { transport: 'body' })))
    t.same(logins.map((l) => l.res.statusCode), Array(20).fill(200))
    t.equal(new Set(logins.map((l) => sidOf(l.accessToken))).size, 20, 'distinct session ids')
    t.equal(new Set(logins.map((l) => l.refreshToken)).size, 20, 'distinct refresh tokens')
    const sessions = await app.inject({ url: '/api/auth/sessions', headers: bearer(logins[0]!.accessToken) })
    t.equal(sessions.json().length, 20)
  })

  t.test(`${name}: a refresh racing a logout — the session ends and no token of it works afterwards`, async (t) => {
    const app = await buildTestApp(t, { DATABASE_URL: database(t) })
    await register(app)
    // Every interleaving the event loop can produce: the logout sent before, among and after
    // a burst of refreshes, with the current token and with a spent one.
    for (let round = 0; round < 12; round++) {
      const start = await login(app, { transport: 'body' })
      let presented = start.refreshToken
      if (round % 2 === 1) presented = (await refreshBody(app, start.refreshToken)).json().refreshToken
      const logoutWith = round % 3 === 0 ? start.refreshToken : presented
      const position = round % 4
      const burst: Array<Promise<LightMyRequestResponse>> = []
      const logout = (): Promise<LightMyRequestResponse> => app.inject({ method: 'POST', url: '/api/auth/logout', payload: { refreshToken: logoutWith } })
      let logoutReply: Promise<LightMyRequestResponse> | undefined
      for (let i = 0; i < 8; i++) {
        if (i === position * 2) logoutReply = logout()
        burst.push(refreshBody(app, presented))
      }
      const replies = await Promise.all(burst)
      t.equal((await logoutReply!).statusCode, 204, `round ${round}: logout 204`)
      for (const r of replies) t.ok([200, 401].includes(r.statusCode), `round ${round}: refresh ${r.statusCode}`)

      // Afterwards: every token anyone saw is dead, and so are the session's access tokens.
      const seen = new Set([start.refreshToken, presented, ...replies.filter((r) => r.statusCode === 200).map((r) => r.json().refreshToken as string)])
      for (const token of seen) {
        const after = await refreshBody(app, token)
        t.equal(after.statusCode, 401, `round ${round}: token dead after logout`)
      }
      const access = [start.accessToken, ...replies.filter((r) => r.statusCode === 200).map((r) => r.json().accessToken as string)]
      for (const token of access) t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(token) })).statusCode, 401)
      t.equal(await count(app, 'SELECT count(*) AS n FROM sessions WHERE id = ? AND revoked_at IS NULL', sidOf(start.accessToken)), 0, `round ${round}: the session row is ended`)
    }
  })
}

t.test('two app instances on one database file (two replicas): parallel refreshes of one token across both get one successor', async (t) => {
  const url = fileDb(t)
  const a = await buildTestApp(t, { DATABASE_URL: url })
  const b = await buildTestApp(t, { DATABASE_URL: url })
  await register(a)
  const first = await login(b, { transport: 'body' })
  const results = await Promise.all(Array.from({ length: N }, async (_, i) => await refreshBody(i % 2 === 0 ? a : b, first.refreshToken)))
  t.same(results.map((r) => r.statusCode), Array(N).fill(200))
  t.equal(new Set(results.map((r) => r.json().refreshToken)).size, 1, 'both instances derive the same successor')
  // Each instance accepts the other's access tokens and sees the same single session.
  const fromA = results[0]!.json().accessToken
  t.equal((await b.inject({ url: '/api/auth/sessions', headers: bearer(fromA) })).json().length, 1)
  // A logout on one instance ends the session for the other at once.
  t.equal((await a.inject({ method: 'POST', url: '/api/auth/logout', payload: { refreshToken: results[1]!.json().refreshToken } })).statusCode, 204)
  t.equal((await refreshBody(b, results[1]!.json().refreshToken)).statusCode, 401)
  t.equal((await b.inject({ url: '/api/auth/me', headers: bearer(fromA) })).statusCode, 401)
})

t.test('parallel password changes and refreshes: other sessions end, and no refresh slips through after the change', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const owner = await login(app, { transport: 'body' })
  const others = await Promise.all(Array.from({ length: 10 }, async () => await login(app, { transport: 'body' })))
  const change = app.inject({
    method: 'POST', url: '/api/auth/password', headers: bearer(owner.accessToken),
    payload: { currentPassword: PASSWORD, newPassword: 'a different passphrase 99' }
  })
  const refreshes = others.map(async (o) => await refreshBody(app, o.refreshToken))
  t.equal((await change).statusCode, 204)
  const results = await Promise.all(refreshes)
  // Whatever won each race, nothing of the other sessions survives the change.
  for (const [i, r] of results.entries()) {
    const tokens = [others[i]!.refreshToken, ...(r.statusCode === 200 ? [r.json().refreshToken as string] : [])]
    for (const token of tokens) t.equal((await refreshBody(app, token)).statusCode, 401)
  }
  t.equal((await refreshBody(app, owner.refreshToken)).statusCode, 200, 'the changing session stays')
})

const liveSessions = async (app: FastifyInstance, userId: string): Promise<number> =>
  await count(app, 'SELECT count(*) AS n FROM sessions WHERE user_id = ? AND revoked_at IS NULL', userId)

/** Everything that ends a user's sessions because the credential changed, as a user or an administrator makes it. */
const credentialChanges: Array<[string, (app: FastifyInstance, owner: { accessToken: string }, userId: string) => Promise<void>]> = [
  ['a password change', async (app, owner) => {
    const res = await app.inject({ method: 'POST', url: '/api/auth/password', headers: bearer(owner.accessToken), payload: { currentPassword: PASSWORD, newPassword: 'a different passphrase 99' } })
    if (res.statusCode !== 204) throw new Error(`password change answered ${res.statusCode}`)
  }],
  ['logout-all', async (app, owner) => {
    const res = await app.inject({ method: 'POST', url: '/api/auth/logout-all', headers: bearer(owner.accessToken) })
    if (res.statusCode !== 204) throw new Error(`logout-all answered ${res.statusCode}`)
  }],
  ['an administrator disabling the account (then enabling it again)', async (app, _owner, userId) => {
    const admin = await adminSession(app)
    for (const action of ['disable', 'enable']) {
      const res = await app.inject({ method: 'POST', url: `/api/admin/users/id:${userId}/${action}`, headers: admin.headers })
      if (res.statusCode !== 200) throw new Error(`${action} answered ${res.statusCode}`)
    }
  }]
]

for (const [name, change] of credentialChanges) {
  t.test(`a login whose password check passed before ${name} committed starts no session: 401, and nothing of it refreshes`, async (t) => {
    const app = await buildTestApp(t)
    const userId = (await register(app)).json().id as string
    const owner = await login(app, { transport: 'body' })
    // The racing login is held after argon2 said yes, before it starts its session.
    const hold = holdVerifications(app)
    const racing = login(app, { transport: 'body' })
    await hold.reached(1)
    hold.stopHolding()
    const before = await liveSessions(app, userId)
    await change(app, owner, userId)
    const after = await liveSessions(app, userId)
    hold.release()
    const { res, refreshToken, accessToken } = await racing
    t.equal(res.statusCode, 401, 'the racing login is refused')
    t.equal(res.json().code, 'INVALID_CREDENTIALS')
    t.equal(await liveSessions(app, userId), after, `no session added after ${name} (${before} before it)`)
    if (refreshToken !== undefined) t.equal((await refreshBody(app, refreshToken)).statusCode, 401, 'its refresh token is refused')
    if (accessToken !== undefined) t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(accessToken) })).statusCode, 401)
    const audit = await rows<{ type: string }>(app, "SELECT type FROM audit_events WHERE user_id = ? AND type IN ('login_succeeded', 'login_failed') ORDER BY id", userId)
    t.same(audit.map((e) => e.type), ['login_succeeded', 'login_failed'], 'the racing login is recorded as a failure, not a success')
  })
}

/**
 * One account with two body-mode sessions, a and b; a's password change (to 'the passphrase of
 * session a') is held after its current-password check passed, until `hold.release()`.
 */
async function passwordChangeHeldAfterCheck (t: Test) {
  const app = await buildTestApp(t)
  const userId = (await register(app)).json().id as string
  const a = await login(app, { transport: 'body' })
  const b = await login(app, { transport: 'body' })
  const hold = holdVerifications(app)
  const fromA = app.inject({ method: 'POST', url: '/api/auth/password', headers: bearer(a.accessToken), payload: { currentPassword: PASSWORD, newPassword: 'the passphrase of session a' } })
  await hold.reached(1)
  hold.stopHolding()
  return { app, userId, a, b, hold, fromA }
}

t.test('a password change whose current-password check passed before another password change committed is refused, and the other one stands', async (t) => {
  const { app, userId, a, b, hold, fromA } = await passwordChangeHeldAfterCheck(t)
  const fromB = await app.inject({ method: 'POST', url: '/api/auth/password', headers: bearer(b.accessToken), payload: { currentPassword: PASSWORD, newPassword: 'the passphrase of session b' } })
  t.equal(fromB.statusCode, 204, 'the change that committed first')
  hold.release()
  const late = await fromA
  t.equal(late.statusCode, 401, 'the change checked against the old password is refused')
  t.equal(late.headers['content-type'] === undefined ? undefined : late.json().code, 'SESSION_ENDED')
  t.equal((await refreshBody(app, a.refreshToken)).statusCode, 401, "the late change's session does not survive")
  t.equal((await refreshBody(app, b.refreshToken)).statusCode, 200, "the first change's session stays")
  t.equal((await login(app, { password: 'the passphrase of session b' })).res.statusCode, 200, 'the first change stands')
  t.equal((await login(app, { password: 'the passphrase of session a' })).res.statusCode, 401, 'the late one did not overwrite it')
  t.equal(await liveSessions(app, userId), 2, "b's session and the login above")
})

t.test('a password change whose current-password check passed before logout-all committed is refused: no session survives it', async (t) => {
  const { app, userId, b, hold, fromA } = await passwordChangeHeldAfterCheck(t)
  t.equal((await app.inject({ method: 'POST', url: '/api/auth/logout-all', headers: bearer(b.accessToken) })).statusCode, 204)
  hold.release()
  t.equal((await fromA).statusCode, 401)
  t.equal(await liveSessions(app, userId), 0, 'logout-all ended every session, and nothing came back')
  t.equal((await login(app)).res.statusCode, 200, 'the password did not change')
})
