/**
 * Attacks on sessions and refresh tokens, over a listening server: token-type confusion,
 * replay of refresh tokens after rotation, logout and a password change, and session
 * fixation.
 *
 * References: RFC 9700 (OAuth 2.0 Security BCP) §2.2.2 and §4.14 (refresh token rotation and
 * replay detection), RFC 8725 §2.8/§3.11 (cross-JWT confusion), OWASP Session Management
 * Cheat Sheet ("Renew the Session ID After Any Privilege Level Change", session fixation).
 */
import t from 'tap'
import { claimsOf } from '../support/jwt.js'
import {
  call, cookieValue, listen, loginBody, loginCookie, me, OWN_ORIGIN, PASSWORD, refreshBody, refreshCookie, registerUser
} from '../support/server.js'

const NEW_PASSWORD = 'another long passphrase 42'

t.test('an access token presented as a refresh token is refused, in cookie and body mode — RFC 8725 §2.8, RFC 9700 §4.14', async (t) => {
  const s = await listen(t)
  await registerUser(s, 'alice')
  const { accessToken } = await loginBody(s, 'alice')
  const viaCookie = await refreshCookie(s, `refresh_token=${accessToken}`)
  t.equal(viaCookie.status, 401)
  t.equal(viaCookie.json.code, 'REFRESH_TOKEN_INVALID')
  t.equal(cookieValue(viaCookie), '', 'the bad cookie is cleared')
  const viaBody = await refreshBody(s, accessToken)
  t.equal(viaBody.status, 401)
  t.equal(viaBody.json.code, 'REFRESH_TOKEN_INVALID')
  t.equal((await call(s, '/api/auth/sessions', { headers: { authorization: `Bearer ${accessToken}` } })).json.length, 1, 'no session was created or changed')
})

t.test('a refresh token presented as a Bearer access token is refused — RFC 8725 §2.8, RFC 6750 §3.1', async (t) => {
  const s = await listen(t)
  await registerUser(s, 'alice')
  const { refreshToken } = await loginBody(s, 'alice')
  const a = await me(s, refreshToken)
  t.equal(a.status, 401)
  t.equal(a.json.code, 'ACCESS_TOKEN_INVALID')
  t.match(a.headers.get('www-authenticate'), /error="invalid_token"/)
})

t.test('replaying a rotated refresh token after the reuse interval ends the whole session — RFC 9700 §4.14.2', async (t) => {
  const s = await listen(t, { REFRESH_REUSE_INTERVAL: '1s' })
  await registerUser(s, 'alice')
  const first = await loginBody(s, 'alice')
  const rotated = await refreshBody(s, first.refreshToken)
  t.equal(rotated.status, 200)
  const successor = rotated.json.refreshToken as string
  t.not(successor, first.refreshToken)

  // Within the interval a replay is a lost response or a second tab: same successor, no harm.
  const retry = await refreshBody(s, first.refreshToken)
  t.equal(retry.status, 200)
  t.equal(retry.json.refreshToken, successor)

  await new Promise((resolve) => setTimeout(resolve, 1300))
  // Past it, the spent token in an attacker's hands is theft: refused, and the session ends.
  const replay = await refreshBody(s, first.refreshToken)
  t.equal(replay.status, 401)
  t.equal(replay.json.code, 'TOKEN_REUSED')
  const legit = await refreshBody(s, successor)
  t.equal(legit.status, 401, 'the newest token of the session is dead too')
  t.equal(legit.json.code, 'SESSION_REVOKED')
  const bearer = await me(s, rotated.json.accessToken)
  t.equal(bearer.status, 401, 'access tokens of the session stop working on this service')
  t.equal(bearer.json.code, 'SESSION_ENDED')
})

t.test('with a reuse interval of 0, any second use of a refresh token ends the session — RFC 9700 §4.14.2', async (t) => {
  const s = await listen(t, { REFRESH_REUSE_INTERVAL: '0' })
  await registerUser(s, 'alice')
  const first = await loginBody(s, 'alice')
  const rotated = await refreshBody(s, first.refreshToken)
  t.equal(rotated.status, 200)
  await new Promise((resolve) => setTimeout(resolve, 5))
  t.equal((await refreshBody(s, first.refreshToken)).json.code, 'TOKEN_REUSED')
  t.equal((await refreshBody(s, rotated.json.refreshToken)).json.code, 'SESSION_REVOKED')
})

t.test('after logout, no refresh token of the session works, old or new, nor its access token on this service — RFC 9700 §4.14, OWASP Session Management', async (t) => {
  const s = await listen(t)
  await registerUser(s, 'alice')
  const first = await loginBody(s, 'alice')
  const second = (await refreshBody(s, first.refreshToken)).json
  const out = await call(s, '/api/auth/logout', { json: { refreshToken: second.refreshToken } })
  t.equal(out.status, 204)
  for (const [name, token] of [['current', second.refreshToken], ['spent', first.refreshToken]]) {
    const a = await refreshBody(s, token)
    t.equal(a.status, 401, name)
    t.equal(a.json.code, 'SESSION_REVOKED', name)
  }
  t.equal((await me(s, second.accessToken)).json.code, 'SESSION_ENDED')

  // Cookie mode too.
  const c = await loginCookie(s, 'alice')
  t.equal((await call(s, '/api/auth/logout', { method: 'POST', headers: { cookie: `refresh_token=${c.refreshToken}`, origin: OWN_ORIGIN } })).status, 204)
  t.equal((await refreshCookie(s, `refresh_token=${c.refreshToken}`)).json.code, 'SESSION_REVOKED')
})

t.test('after a password change, every other session\'s tokens are dead; the changing session stays — OWASP Session Management, RFC 9700 §4.14.2', async (t) => {
  const s = await listen(t)
  await registerUser(s, 'alice')
  const stolen = await loginBody(s, 'alice') // what an attacker holds
  const owner = await loginBody(s, 'alice')
  const change = await call(s, '/api/auth/password', {
    headers: { authorization: `Bearer ${owner.accessToken}` },
    json: { currentPassword: PASSWORD, newPassword: NEW_PASSWORD }
  })
  t.equal(change.status, 204)
  t.equal((await refreshBody(s, stolen.refreshToken)).json.code, 'SESSION_REVOKED')
  t.equal((await me(s, stolen.accessToken)).json.code, 'SESSION_ENDED')
  t.equal((await refreshBody(s, owner.refreshToken)).status, 200, 'the session that changed the password goes on')
  // The old password no longer logs in; the new one does.
  t.equal((await call(s, '/api/auth/login', { json: { username: 'alice', password: PASSWORD, transport: 'body' } })).status, 401)
  t.equal((await call(s, '/api/auth/login', { json: { username: 'alice', password: NEW_PASSWORD, transport: 'body' } })).status, 200)
})

t.test('session fixation: a client-chosen refresh cookie is never adopted; login always mints a new session — OWASP Session Management Cheat Sheet (Session Fixation)', async (t) => {
  const s = await listen(t)
  await registerUser(s, 'victim')
  await registerUser(s, 'attacker')

  // 1. A made-up token, well-formed: not adopted, replaced by a fresh one, and useless.
  const chosen = 'A'.repeat(43)
  const withChosen = await loginCookie(s, 'victim', PASSWORD, { cookie: `refresh_token=${chosen}`, origin: OWN_ORIGIN })
  t.not(withChosen.refreshToken, chosen)
  t.equal((await refreshCookie(s, `refresh_token=${chosen}`)).json.code, 'REFRESH_TOKEN_INVALID')

  // 2. The attacker's own valid session planted in the victim's browser before the victim logs in.
  const planted = await loginCookie(s, 'attacker')
  const plantedSid = claimsOf(planted.accessToken).sid
  const victim = await loginCookie(s, 'victim', PASSWORD, { cookie: `refresh_token=${planted.refreshToken}`, origin: OWN_ORIGIN })
  const victimClaims = claimsOf(victim.accessToken)
  t.not(victim.refreshToken, planted.refreshToken, 'the victim gets a new refresh token')
  t.not(victimClaims.sid, plantedSid, 'the victim gets a new session')
  t.not(victimClaims.sub, claimsOf(planted.accessToken).sub)
  // The planted token still only opens the attacker's session, never the victim's.
  const attackerRefresh = await refreshCookie(s, `refresh_token=${planted.refreshToken}`, { origin: OWN_ORIGIN })
  t.equal(attackerRefresh.status, 200)
  t.equal(claimsOf(attackerRefresh.json.accessToken).sub, claimsOf(planted.accessToken).sub)
  t.equal((await me(s, victim.accessToken)).json.username, 'victim')

  // 3. Logging in again from the same browser never reuses the previous session.
  const again = await loginCookie(s, 'victim', PASSWORD, { cookie: `refresh_token=${victim.refreshToken}`, origin: OWN_ORIGIN })
  t.not(claimsOf(again.accessToken).sid, victimClaims.sid)
  t.not(again.refreshToken, victim.refreshToken)

  // 4. A body-mode login ignores any cookie too.
  const body = await loginBody(s, 'victim', PASSWORD, { cookie: `refresh_token=${planted.refreshToken}` })
  t.not(claimsOf(body.accessToken).sid, plantedSid)
  t.equal(body.answer.setCookies.length, 0, 'body mode sets no cookie')
})

t.test('a session id from the sessions list cannot be used as a token of any kind — OWASP Session Management', async (t) => {
  const s = await listen(t)
  await registerUser(s, 'alice')
  const l = await loginBody(s, 'alice')
  const sid = claimsOf(l.accessToken).sid as string
  t.equal((await refreshBody(s, sid)).json.code, 'REFRESH_TOKEN_INVALID')
  t.equal((await refreshCookie(s, `refresh_token=${sid}`)).json.code, 'REFRESH_TOKEN_INVALID')
  t.equal((await me(s, sid)).json.code, 'ACCESS_TOKEN_INVALID')
})
