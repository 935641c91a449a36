/**
 * Three service processes on one database, hammered at once. Every rule that keeps sessions
 * safe must hold across processes by construction (conditional writes in the database, not
 * locks in a process): one successor for a token presented to every instance at once, reuse
 * detected wherever the spent token comes back, a session ended on one instance refused by all,
 * a key rotation picked up by every instance, nothing acknowledged lost when one instance is
 * killed. With Redis, the login throttle and the per-IP limits are shared too.
 *
 * The backend is the pass's (test/support/instances.ts): PostgreSQL in the PostgreSQL pass (a
 * cluster of the suite's own, restarted under load in the last test), one shared SQLite file
 * otherwise (several processes on one file are supported as well). Redis is always there.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import t from 'tap'
import { headerOf } from '../support/jwt.js'
import { ROOT } from '../support/process.js'
import { call, loginBody, me, PASSWORD, refreshBody, registerUser, type Served } from '../support/server.js'
import { startBackend, startInstances, type Backend, type Instances } from '../support/instances.js'
import { redisServer } from '../support/redis.js'

const TEST_DATABASE_IS_POSTGRES = process.env.TEST_DATABASE === 'postgres'
const served = (base: string): Served => ({ base }) as Served

async function keysCli (env: Record<string, string>, args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'keys.ts'), ...args], {
    cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
  child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  const [code] = await once(child, 'exit') as [number | null]
  clearTimeout(timer)
  return { code, stdout, stderr }
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

let backend: Backend
let redisUrl: string
let cluster: Instances
t.before(async () => {
  const redis = await redisServer(t)
  if (redis === null) return
  redisUrl = redis.url
  backend = await startBackend(t)
  cluster = await startInstances(t, backend, 3, { REDIS_URL: redisUrl, REFRESH_REUSE_INTERVAL: '2s', KEY_CHECK_INTERVAL: '1s' })
})

t.test('one token presented to every instance at once: exactly one successor', async (t) => {
  const [a] = cluster.servers
  await registerUser(served(a!.base), 'race-one')
  for (let round = 0; round < 5; round++) {
    const { refreshToken } = await loginBody(served(a!.base), 'race-one')
    // Six presentations of the same token, two per instance, in flight together.
    const answers = await Promise.all(cluster.servers.flatMap((s) => [refreshBody(served(s.base), refreshToken), refreshBody(served(s.base), refreshToken)]))
    const ok = answers.filter((r) => r.status === 200)
    t.equal(ok.length, answers.length, `round ${round}: within the reuse interval every presentation is answered (${answers.map((r) => r.status).join(',')})`)
    const successors = new Set(ok.map((r) => (r.json as { refreshToken: string }).refreshToken))
    t.equal(successors.size, 1, `round ${round}: one successor for every answer`)
    const [successor] = successors
    // The successor is live on every instance; the chain goes on from it alone.
    const next = await refreshBody(served(cluster.servers[2]!.base), successor!)
    t.equal(next.status, 200, `round ${round}: the successor rotates`)
  }
})

t.test('reuse detected on any instance ends the session on all', async (t) => {
  const [a, b, c] = cluster.servers
  await registerUser(served(a!.base), 'reuse-one')
  const first = await loginBody(served(a!.base), 'reuse-one')
  const rotated = await refreshBody(served(a!.base), first.refreshToken)
  t.equal(rotated.status, 200)
  const { refreshToken: successor, accessToken } = rotated.json as { refreshToken: string, accessToken: string }
  await sleep(2500) // past REFRESH_REUSE_INTERVAL
  const reuse = await refreshBody(served(b!.base), first.refreshToken)
  t.equal(reuse.status, 401)
  t.equal((reuse.json as { code: string }).code, 'TOKEN_REUSED', 'instance B sees the reuse of a token A rotated')
  const after = await refreshBody(served(c!.base), successor)
  t.equal(after.status, 401, 'the successor is dead on instance C')
  t.equal((await me(served(a!.base), accessToken)).status, 401, 'the access token is refused on instance A')
})

t.test('a logout on one instance is refused by every other at once', async (t) => {
  const [a, b, c] = cluster.servers
  await registerUser(served(a!.base), 'logout-one')
  const session = await loginBody(served(b!.base), 'logout-one')
  for (const s of cluster.servers) t.equal((await me(served(s.base), session.accessToken)).status, 200, `live on ${s.base}`)
  const out = await call(served(a!.base), '/api/auth/logout', { method: 'POST', json: { refreshToken: session.refreshToken }, headers: { authorization: `Bearer ${session.accessToken}` } })
  t.ok(out.status === 204 || out.status === 200, `logout on A: ${out.status}`)
  t.equal((await me(served(b!.base), session.accessToken)).status, 401, 'B refuses the access token')
  t.equal((await me(served(c!.base), session.accessToken)).status, 401, 'C refuses the access token')
  t.equal((await refreshBody(served(c!.base), session.refreshToken)).status, 401, 'C refuses the refresh token')
})

t.test('a key rotation while the instances serve: all sign with the new key within seconds', async (t) => {
  await registerUser(served(cluster.servers[0]!.base), 'keys-one')
  const before = await loginBody(served(cluster.servers[0]!.base), 'keys-one')
  const oldKid = headerOf(before.accessToken).kid as string

  // Load on every instance while the key changes: every answer must stay correct.
  let stop = false
  const failures: string[] = []
  const load = cluster.servers.map(async (s) => {
    let token = (await loginBody(served(s.base), 'keys-one')).refreshToken
    while (!stop) {
      const r = await refreshBody(served(s.base), token)
      if (r.status !== 200) { failures.push(`${s.base}: ${r.status}`); return }
      token = (r.json as { refreshToken: string }).refreshToken
      const check = await me(served(s.base), (r.json as { accessToken: string }).accessToken)
      if (check.status !== 200) failures.push(`${s.base} /me: ${check.status}`)
    }
  })
  await sleep(300)
  const rotated = await keysCli(cluster.env, ['rotate', '--immediate', '--json'])
  t.equal(rotated.code, 0, `keys rotate: ${rotated.stderr}`)
  const deadline = Date.now() + 15_000
  const kids = new Map<string, string>()
  for (const s of cluster.servers) {
    for (;;) {
      const fresh = await loginBody(served(s.base), 'keys-one')
      const kid = headerOf(fresh.accessToken).kid as string
      if (kid !== oldKid || Date.now() > deadline) { kids.set(s.base, kid); break }
      await sleep(200)
    }
  }
  stop = true
  await Promise.all(load)
  t.same(failures, [], 'no request failed during the rotation')
  for (const [base, kid] of kids) t.not(kid, oldKid, `${base} signs with the new key`)
  t.equal(new Set(kids.values()).size, 1, 'every instance signs with the same new key')
  // A token signed by any instance verifies on every other, and the old key's tokens still do.
  for (const s of cluster.servers) {
    const token = (await loginBody(served(s.base), 'keys-one')).accessToken
    for (const other of cluster.servers) t.equal((await me(served(other.base), token)).status, 200, `${s.base}'s token on ${other.base}`)
    t.equal((await me(served(s.base), before.accessToken)).status, 200, `the old key's token still verifies on ${s.base}`)
  }
})

t.test('the login throttle is shared: parallel wrong passwords over every instance are counted once', async (t) => {
  await registerUser(served(cluster.servers[0]!.base), 'throttled-one')
  // Default RATE_LIMIT_LOGIN_FAILURES_PER_USER: 10 failures per 15 minutes, for all instances together.
  const guesses = await Promise.all(Array.from({ length: 60 }, async (_, i) =>
    await call(served(cluster.servers[i % 3]!.base), '/api/auth/login', { json: { username: 'throttled-one', password: `wrong guess ${i}`, transport: 'body' } })))
  const evaluated = guesses.filter((r) => r.status === 401).length
  const refused = guesses.filter((r) => r.status === 429).length
  t.equal(evaluated, 10, 'ten guesses evaluated, over three instances')
  t.equal(refused, 50, 'the rest refused before any password was checked')
  for (const s of cluster.servers) {
    const r = await call(served(s.base), '/api/auth/login', { json: { username: 'throttled-one', password: PASSWORD, transport: 'body' } })
    t.equal(r.status, 429, `the right password is refused too while throttled, on ${s.base}`)
  }
})

t.test('per-IP limits are shared: three instances allow what one would', async (t) => {
  const limited = await startInstances(t, backend, 3, { REDIS_URL: redisUrl, RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_LOGIN_MAX: '6', RATE_LIMIT_LOGIN_WINDOW: '1m' })
  const answers = []
  for (let i = 0; i < 12; i++) {
    answers.push((await call(served(limited.servers[i % 3]!.base), '/api/auth/login', { json: { username: `nobody-${i}`, password: 'not the password at all' } })).status)
  }
  t.same(answers.filter((s) => s !== 429).length, 6, `six logins from one address in the window, whichever instance (${answers.join(',')})`)
  t.same(answers.slice(6), [429, 429, 429, 429, 429, 429], 'then every instance refuses')
})

t.test('PostgreSQL restarted under load: clean 503s, then service again without a restart', { skip: TEST_DATABASE_IS_POSTGRES ? false : 'PostgreSQL pass only (the SQLite pass has no server to restart)' }, async (t) => {
  const [a] = cluster.servers
  await registerUser(served(a!.base), 'outage-one')
  const statuses = new Map<number, number>()
  const bad: string[] = []
  let stop = false
  const note = (s: { base: string }, r: { status: number, text: string, json: unknown, headers: Headers }): void => {
    statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1)
    if (r.status === 503 && ((r.json as { code?: string } | undefined)?.code !== 'DATABASE_UNAVAILABLE' || r.headers.get('retry-after') === null)) bad.push(`${s.base}: 503 ${r.text}`)
    else if (r.status !== 200 && r.status !== 503) bad.push(`${s.base}: ${r.status} ${r.text}`)
  }
  // Logins too: a session insert holds its connection between statements, where the server
  // ending it must fail the request, not the process.
  // (One account per loop: the login throttle holds at most 10 attempts of one account in flight.)
  for (let i = 0; i < 12; i++) await registerUser(served(a!.base), `outage-login-${i}`)
  const logins = cluster.servers.flatMap((s, n) => Array.from({ length: 4 }, async (_, i) => {
    while (!stop && bad.length === 0) {
      const r = await call(served(s.base), '/api/auth/login', { json: { username: `outage-login-${n * 4 + i}`, password: PASSWORD, transport: 'body' } })
      note(s, r)
      if (r.status !== 200) await sleep(50)
    }
  }))
  const load = cluster.servers.map(async (s) => {
    let refreshToken: string | null = null
    while (!stop && bad.length === 0) {
      if (refreshToken === null) {
        // A refresh answered 503 may or may not have committed: start a new session instead
        // of presenting the token again (late, that is reuse by the rules).
        const r = await call(served(s.base), '/api/auth/login', { json: { username: 'outage-one', password: PASSWORD, transport: 'body' } })
        note(s, r)
        if (r.status === 200) refreshToken = (r.json as { refreshToken: string }).refreshToken
        else await sleep(100)
        continue
      }
      const r = await refreshBody(served(s.base), refreshToken)
      note(s, r)
      refreshToken = r.status === 200 ? (r.json as { refreshToken: string }).refreshToken : null
    }
  })
  await sleep(500)
  await backend.cluster!.restart('fast', 1500)
  // Back without restarting any instance: each answers /ready and refreshes again.
  for (const s of cluster.servers) {
    let ready = 0
    for (let i = 0; i < 100 && ready !== 200; i++) {
      ready = (await call(served(s.base), '/ready')).status
      if (ready !== 200) await sleep(100)
    }
    t.equal(ready, 200, `${s.base} is ready again`)
  }
  await sleep(500)
  stop = true
  await Promise.all([...load, ...logins])
  t.same(bad, [], 'every failed request was a 503 DATABASE_UNAVAILABLE with Retry-After')
  t.ok((statuses.get(503) ?? 0) > 0, `the outage was seen (${JSON.stringify([...statuses])})`)
  const fresh = await loginBody(served(cluster.servers[2]!.base), 'outage-one')
  t.equal((await me(served(cluster.servers[0]!.base), fresh.accessToken)).status, 200, 'logins and /me work on every instance after the outage')
})

t.test('one instance killed with SIGKILL mid-load: nothing acknowledged is lost, the others serve', async (t) => {
  const [a, b, c] = cluster.servers
  const names = Array.from({ length: 6 }, (_, i) => `kill-${i}`)
  for (const n of names) await registerUser(served(a!.base), n)
  // One refresh chain per user, driven against B; what B acknowledged is remembered.
  const acknowledged = new Map<string, string>()
  for (const n of names) acknowledged.set(n, (await loginBody(served(a!.base), n)).refreshToken)
  const registered: string[] = []
  let stop = false
  const chains = names.map(async (n) => {
    while (!stop) {
      const r = await refreshBody(served(b!.base), acknowledged.get(n)!).catch(() => null)
      if (r === null) return // B is gone: the request was never answered
      if (r.status !== 200) return
      acknowledged.set(n, (r.json as { refreshToken: string }).refreshToken)
    }
  })
  const signups = (async () => {
    for (let i = 0; !stop; i++) {
      const r = await registerUser(served(b!.base), `killreg-${i}`).catch(() => null)
      if (r === null) return
      if (r.status === 201) registered.push(`killreg-${i}`)
    }
  })()
  await sleep(800)
  await cluster.kill(1, 'SIGKILL')
  stop = true
  await Promise.all([...chains, signups])
  t.ok(registered.length > 0, `B acknowledged ${registered.length} registrations before it died`)
  // Everything B acknowledged is there, served by A and C.
  for (const [n, token] of acknowledged) {
    const r = await refreshBody(served(c!.base), token)
    t.equal(r.status, 200, `${n}: the last token B acknowledged rotates on C`)
  }
  for (const n of registered) {
    const r = await call(served(a!.base), '/api/auth/login', { method: 'POST', json: { username: n, password: PASSWORD, transport: 'body' } })
    t.equal(r.status, 200, `${n}, registered on B, logs in on A`)
  }
  const token = (await loginBody(served(a!.base), names[0]!)).accessToken
  t.equal((await me(served(c!.base), token)).status, 200, 'the survivors keep serving')
})
