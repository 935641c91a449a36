import t from 'tap'
import { bearer, buildTestApp, login, refreshWithBody, register } from '../support/app.js'
import { rows } from '../support/db.js'
import { sidOf } from '../support/jwt.js'

t.test('lists live sessions with their login user agent and ip, marking the current one', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const phone = await login(app, { transport: 'body', headers: { 'user-agent': 'Phone/1.0' } })
  const laptop = await login(app, { transport: 'body', headers: { 'user-agent': 'Laptop/2.0' } })
  const ended = await login(app, { transport: 'body' })
  await app.inject({ method: 'POST', url: '/api/auth/logout', payload: { refreshToken: ended.refreshToken } })

  const res = await app.inject({ url: '/api/auth/sessions', headers: bearer(laptop.accessToken) })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  const list = res.json() as Array<Record<string, unknown>>
  t.equal(list.length, 2, 'ended sessions are not listed')
  const byId = Object.fromEntries(list.map((s) => [s.id, s]))
  t.match(byId[sidOf(laptop.accessToken)], { userAgent: 'Laptop/2.0', ip: '127.0.0.1', current: true })
  t.match(byId[sidOf(phone.accessToken)], { userAgent: 'Phone/1.0', current: false })
  for (const s of list) {
    t.same(Object.keys(s).sort(), ['createdAt', 'current', 'expiresAt', 'id', 'ip', 'lastUsedAt', 'userAgent'])
    for (const k of ['createdAt', 'lastUsedAt', 'expiresAt']) t.ok((s[k] as string).endsWith('Z'), k)
  }
})

t.test('an ip that is not an address is never stored: markup in X-Forwarded-For gives null', async (t) => {
  for (const trust of ['1', 'true']) {
    const app = await buildTestApp(t, { TRUST_PROXY: trust })
    await register(app)
    const payload = '<img src=x onerror=alert(1)>'
    const l = await login(app, { transport: 'body', headers: { 'x-forwarded-for': payload } })
    const good = await login(app, { transport: 'body', headers: { 'x-forwarded-for': '2001:db8::7' } })
    const list = (await app.inject({ url: '/api/auth/sessions', headers: bearer(l.accessToken) })).json() as Array<{ id: string, ip: string | null }>
    t.notMatch(JSON.stringify(list), /onerror|<img/, `TRUST_PROXY=${trust}: the markup is nowhere in the list`)
    t.equal(list.find((s) => s.id === sidOf(l.accessToken))?.ip, null, `TRUST_PROXY=${trust}: stored as null`)
    t.equal(list.find((s) => s.id === sidOf(good.accessToken))?.ip, '2001:db8::7', `TRUST_PROXY=${trust}: a real address is kept`)
    const audit = (await rows<{ ip: string }>(app, 'SELECT ip FROM audit_events WHERE ip IS NOT NULL')).map((r) => r.ip)
    t.notOk(audit.some((ip) => ip.includes('<')), `TRUST_PROXY=${trust}: nor in the audit log`)
  }
})

t.test('deleting a session ends it; the current one may be deleted too', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  const a = await login(app, { transport: 'body' })
  const b = await login(app, { transport: 'body' })
  const sidB = sidOf(b.accessToken)
  const res = await app.inject({ method: 'DELETE', url: `/api/auth/sessions/${sidB}`, headers: bearer(a.accessToken) })
  t.equal(res.statusCode, 204)
  t.equal((await refreshWithBody(app, b.refreshToken)).statusCode, 401)
  const again = await app.inject({ method: 'DELETE', url: `/api/auth/sessions/${sidB}`, headers: bearer(a.accessToken) })
  t.equal(again.statusCode, 404, 'already ended')
  t.equal(again.json().code, 'SESSION_NOT_FOUND')

  const sidA = sidOf(a.accessToken)
  t.equal((await app.inject({ method: 'DELETE', url: `/api/auth/sessions/${sidA}`, headers: bearer(a.accessToken) })).statusCode, 204)
  t.equal((await app.inject({ url: '/api/auth/me', headers: bearer(a.accessToken) })).statusCode, 401)
})

t.test('404 for an unknown session or another user\'s; 401 without a token', async (t) => {
  const app = await buildTestApp(t)
  await register(app)
  await register(app, 'bob')
  const alice = await login(app, { transport: 'body' })
  const bob = await login(app, { username: 'bob', transport: 'body' })
  const bobSid = sidOf(bob.accessToken)
  const res = await app.inject({ method: 'DELETE', url: `/api/auth/sessions/${bobSid}`, headers: bearer(alice.accessToken) })
  t.equal(res.statusCode, 404)
  t.equal((await refreshWithBody(app, bob.refreshToken)).statusCode, 200, 'bob\'s session is untouched')
  t.equal((await app.inject({ method: 'DELETE', url: '/api/auth/sessions/nope', headers: bearer(alice.accessToken) })).statusCode, 404)
  t.equal((await app.inject({ url: '/api/auth/sessions' })).statusCode, 401)
  t.equal((await app.inject({ method: 'DELETE', url: `/api/auth/sessions/${bobSid}` })).statusCode, 401)
})
