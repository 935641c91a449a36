/**
 * Online guessing against a listening server behind a (simulated) proxy: TRUST_PROXY=true and
 * X-Forwarded-For stand in for many client addresses.
 *
 * References: OWASP Credential Stuffing Prevention Cheat Sheet, OWASP Authentication Cheat
 * Sheet ("Protect Against Automated Attacks", "Account Lockout"), NIST SP 800-63B §5.2.2
 * (rate limiting), RFC 6585 §4 and RFC 9110 §10.2.3 (429 with Retry-After).
 */
import t, { type Test } from 'tap'
import { holdVerifications, until } from '../support/app.js'
import { count } from '../support/db.js'
import { call, listen, loginFrom, PASSWORD, registerUser, type Answer, type Served } from '../support/server.js'

const ip = (n: number): string => `203.0.113.${n % 250 + 1}`
const login = async (s: Served, username: string, password: string, from: string): Promise<Answer> =>
  await call(s, '/api/auth/login', { json: { username, password, transport: 'body' }, headers: { 'x-forwarded-for': from } })

function assertLimited (t: Test, a: Answer, label: string): void {
  t.equal(a.status, 429, `${label}: 429`)
  t.equal(a.json?.code, 'RATE_LIMITED', `${label}: code`)
  const retry = Number(a.headers.get('retry-after'))
  t.ok(Number.isInteger(retry) && retry > 0, `${label}: Retry-After is a positive number of seconds (${String(a.headers.get('retry-after'))})`)
}

t.test('credential stuffing: guesses at one account from many addresses hit the per-account limit, and even the right password is refused while it holds — OWASP Credential Stuffing Prevention, NIST SP 800-63B §5.2.2', async (t) => {
  const s = await listen(t, {
    RATE_LIMIT_ENABLED: 'true',
    TRUST_PROXY: 'true',
    RATE_LIMIT_LOGIN_MAX: '1000', // the per-address limit is not what stops this attack
    RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: '5',
    RATE_LIMIT_LOGIN_FAILURES_PER_USER_WINDOW: '15m'
  })
  await registerUser(s, 'victim')
  await registerUser(s, 'bystander')
  // Every guess from a new address: a per-IP limit alone would never trigger.
  for (let i = 0; i < 5; i++) {
    const a = await login(s, 'victim', `guess number ${i} of many`, ip(i))
    t.equal(a.status, 401, `guess ${i} from ${ip(i)}`)
  }
  assertLimited(t, await login(s, 'victim', 'guess number 6 of many', ip(100)), 'sixth guess')
  assertLimited(t, await login(s, 'victim', PASSWORD, ip(200)), 'the right password while locked')
  // Case and Unicode spellings of the username are the same account for the limit.
  assertLimited(t, await login(s, 'VICTIM', PASSWORD, ip(201)), 'upper-case spelling')
  assertLimited(t, await login(s, ' ｖｉｃｔｉｍ ', PASSWORD, ip(202)), 'full-width spelling (NFKC)')
  // Other accounts are not affected.
  t.equal((await login(s, 'bystander', PASSWORD, ip(100))).status, 200, 'another account logs in')
})

t.test('credential stuffing against an unknown username is limited exactly like a known one (the limit reveals nothing) — OWASP Authentication Cheat Sheet (Authentication and Error Messages)', async (t) => {
  const s = await listen(t, {
    RATE_LIMIT_ENABLED: 'true',
    TRUST_PROXY: 'true',
    RATE_LIMIT_LOGIN_MAX: '1000',
    RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: '3'
  })
  await registerUser(s, 'known')
  const trace = async (username: string): Promise<Array<[number, string]>> => {
    const out: Array<[number, string]> = []
    for (let i = 0; i < 5; i++) {
      const a = await login(s, username, 'not the password at all', ip(i + (username === 'known' ? 0 : 50)))
      out.push([a.status, a.json.code])
    }
    return out
  }
  const known = await trace('known')
  const unknown = await trace('nobody-by-this-name')
  t.same(unknown, known)
  t.same(known.map(([status]) => status), [401, 401, 401, 429, 429])
})

t.test('password spraying: one address trying many usernames hits the per-address login limit — OWASP Credential Stuffing Prevention (password spraying), OWASP Authentication Cheat Sheet', async (t) => {
  const s = await listen(t, {
    RATE_LIMIT_ENABLED: 'true',
    TRUST_PROXY: 'true',
    RATE_LIMIT_LOGIN_MAX: '5',
    RATE_LIMIT_LOGIN_WINDOW: '1m'
  })
  const attacker = '198.51.100.7'
  for (let i = 0; i < 5; i++) {
    // One common password against a different account each time: never twice per account.
    const a = await login(s, `user${i}`, 'Summer2024!Summer2024!', attacker)
    t.equal(a.status, 401, `spray ${i}`)
  }
  assertLimited(t, await login(s, 'user5', 'Summer2024!Summer2024!', attacker), 'sixth account from the same address')
  // Another address is not held back by the attacker's limit.
  await registerUser(s, 'alice')
  t.equal((await login(s, 'alice', PASSWORD, '198.51.100.8')).status, 200, 'a different address logs in')
  // Without TRUST_PROXY the header would not be believed; with it, rotating the header is
  // exactly "many addresses", which the per-account limit above covers.
})

t.test('X-Forwarded-For is not believed unless TRUST_PROXY is set: a forged header does not escape the per-address limit — OWASP Credential Stuffing Prevention', async (t) => {
  const s = await listen(t, {
    RATE_LIMIT_ENABLED: 'true',
    RATE_LIMIT_LOGIN_MAX: '3',
    RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: '1000'
  })
  const statuses: number[] = []
  for (let i = 0; i < 5; i++) statuses.push((await login(s, `user${i}`, 'a wrong password here', ip(i))).status)
  t.same(statuses, [401, 401, 401, 429, 429], 'every request counted against 127.0.0.1, whatever the header said')
})

const CONCURRENT = 100
const sources = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']

t.test('concurrent guesses: 100 wrong passwords for one account at once, from five addresses, get at most the per-account limit evaluated; the rest 429 without hashing — OWASP Credential Stuffing Prevention, NIST SP 800-63B §5.2.2', async (t) => {
  const max = 5
  const s = await listen(t, {
    RATE_LIMIT_ENABLED: 'true',
    RATE_LIMIT_LOGIN_MAX: '1000', // the per-address limit is not what stops this attack
    RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: String(max),
    RATE_LIMIT_LOGIN_FAILURES_PER_USER_WINDOW: '15m'
  })
  await registerUser(s, 'victim')
  // Every verification is held after argon2 until all 100 requests are either held there or
  // answered: every guess is in flight at once, on a fast machine as on a slow one.
  const hold = holdVerifications(s.app)
  let answered = 0
  const guesses = Array.from({ length: CONCURRENT }, async (_, i) => {
    const a = await loginFrom(s, sources[i % sources.length]!, 'victim', `wrong guess number ${i}`)
    answered++
    return a
  })
  await until(() => hold.held + answered === CONCURRENT)
  t.equal(hold.held, max, `only ${max} guesses reached the password check`)
  hold.release()
  const answers = await Promise.all(guesses)
  const statuses = answers.map((a) => a.status)
  t.equal(statuses.filter((x) => x === 401).length, max, `${max} evaluated: 401`)
  t.equal(statuses.filter((x) => x === 429).length, CONCURRENT - max, 'the rest: 429')
  t.ok(answers.filter((a) => a.status === 429).every((a) => Number(a.retryAfter) > 0), 'every 429 carries Retry-After')
  await s.app.audit.settled()
  t.equal(await count(s.app, "SELECT count(*) AS n FROM audit_events WHERE type = 'login_failed'"), max, 'as many failed logins recorded as were evaluated')
  t.equal((await loginFrom(s, '127.0.0.7', 'victim', PASSWORD)).status, 429, 'afterwards even the right password waits')
})

t.test('concurrent guesses: in a burst whose right password arrives after the limit is used up, the right password is refused too — OWASP Credential Stuffing Prevention', async (t) => {
  const max = 5
  const s = await listen(t, {
    RATE_LIMIT_ENABLED: 'true',
    RATE_LIMIT_LOGIN_MAX: '1000',
    RATE_LIMIT_LOGIN_FAILURES_PER_USER_MAX: String(max)
  })
  await registerUser(s, 'victim')
  const hold = holdVerifications(s.app)
  let answered = 0
  const wrong = Array.from({ length: 20 }, async (_, i) => {
    const a = await loginFrom(s, sources[i % sources.length]!, 'victim', `wrong guess number ${i}`)
    answered++
    return a
  })
  // The wrong guesses have all arrived (held in their password check, or answered) and none
  // has finished its check: the right password comes now, while they are still in flight.
  await until(() => hold.held + answered === 20)
  const right = loginFrom(s, sources[0]!, 'victim', PASSWORD).then((a) => { answered++; return a })
  await until(() => hold.held + answered === 21)
  hold.release()
  t.equal((await right).status, 429, 'the right password, after the limit: 429, no session')
  t.same((await Promise.all(wrong)).map((a) => a.status).sort(), [...Array(max).fill(401), ...Array(20 - max).fill(429)])
  t.equal(await count(s.app, 'SELECT count(*) AS n FROM sessions'), 0, 'no session was started')
})
