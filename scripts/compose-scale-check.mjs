// The client side of scripts/compose-scale-check.sh: talks to the service only through the
// balancer, as a client would.
//
//   node scripts/compose-scale-check.mjs both <base-url> <state-file> <instances>
//     register -> login (body mode) -> refresh -> /me; then asks until every instance named in
//     <instances> (comma-separated HAProxy server names, from `x-served-by`) has answered a
//     refresh or /me of the same session: the session, its refresh chain and the signing key
//     are shared. Keeps the session in <state-file>.
//   node scripts/compose-scale-check.mjs survivor <base-url> <state-file> <instance>
//     after the other instances were stopped: 20 refreshes of the same chain, each followed by
//     /me with the new access token, and a fresh login, all answered 200 by <instance>; the
//     access token from before the stop is still accepted. Keeps the session's newest tokens.
//   node scripts/compose-scale-check.mjs later <base-url> <state-file> <instances>
//     after a backup was taken: the session refreshes once more and a new account registers,
//     both of which the restore must undo. Keeps the session's tokens from before the backup.
//   node scripts/compose-scale-check.mjs restored <base-url> <state-file> <instances>
//     after the backup was restored: the refresh token from before the backup is accepted
//     (its rotation after the backup is gone), /me answers with the new access token, the
//     account registered after the backup is gone (401), the one from before logs in.
//
// Prints one line per check; exits 1 at the first failure.
import { readFileSync, writeFileSync } from 'node:fs'
import { check, client } from './http-check.mjs'

const [phase, base, stateFile, instances] = process.argv.slice(2)
if (!['both', 'survivor', 'later', 'restored'].includes(phase) || !base || !stateFile || !instances) {
  console.error('usage: node scripts/compose-scale-check.mjs both|survivor|later|restored <base-url> <state-file> <instances>')
  process.exit(64)
}

const call = client(base)

const me = (accessToken) => call('GET', '/api/auth/me', undefined, { authorization: `Bearer ${accessToken}` })
const refresh = (refreshToken) => call('POST', '/api/auth/refresh', { refreshToken })

if (phase === 'both') {
  const wanted = instances.split(',')
  const username = `scale-${Date.now().toString(36)}`
  const password = `scale passphrase ${Math.random().toString(36).slice(2)}`
  const registered = await call('POST', '/api/auth/register', { username, password })
  check(registered.status === 201, `register ${username} (${registered.servedBy})`, registered.text)
  const login = await call('POST', '/api/auth/login', { username, password, transport: 'body' })
  check(login.status === 200 && typeof login.json?.refreshToken === 'string', `login (${login.servedBy})`, login.text)
  let { accessToken, refreshToken } = login.json
  const seen = new Set()
  for (let i = 0; i < 20 && !wanted.every((w) => seen.has(w)); i++) {
    const r = await refresh(refreshToken)
    check(r.status === 200, `refresh ${i + 1} (${r.servedBy})`, r.text)
    ;({ accessToken, refreshToken } = r.json)
    seen.add(r.servedBy)
    const m = await me(accessToken)
    check(m.status === 200 && m.json?.username === username, `/me with the new access token (${m.servedBy})`, m.text)
    seen.add(m.servedBy)
  }
  check(wanted.every((w) => seen.has(w)), `one session served by every instance (${[...seen].sort().join(', ')})`, `wanted ${wanted.join(', ')}`)
  writeFileSync(stateFile, JSON.stringify({ username, password, accessToken, refreshToken }))
} else if (phase === 'survivor') {
  const state = JSON.parse(readFileSync(stateFile, 'utf8'))
  const before = await me(state.accessToken)
  check(before.status === 200 && before.servedBy === instances, `the access token from before the stop (${before.servedBy})`, before.text)
  let { refreshToken, accessToken } = state
  const served = new Set()
  for (let i = 0; i < 20; i++) {
    const r = await refresh(refreshToken)
    if (r.status !== 200) check(false, `refresh ${i + 1} after the stop (${r.servedBy})`, r.text)
    ;({ refreshToken, accessToken } = r.json)
    const m = await me(r.json.accessToken)
    if (m.status !== 200) check(false, `/me ${i + 1} after the stop (${m.servedBy})`, m.text)
    served.add(r.servedBy).add(m.servedBy)
  }
  check(served.size === 1 && served.has(instances), `20 refreshes and 20 /me after the stop, all 200 (served by ${[...served].join(', ')})`)
  const login = await call('POST', '/api/auth/login', { username: state.username, password: state.password, transport: 'body' })
  check(login.status === 200, `a new login after the stop (${login.servedBy})`, login.text)
  writeFileSync(stateFile, JSON.stringify({ ...state, accessToken, refreshToken }))
} else if (phase === 'later') {
  const state = JSON.parse(readFileSync(stateFile, 'utf8'))
  const r = await refresh(state.refreshToken)
  check(r.status === 200, `after the backup: the session refreshes once more (${r.servedBy})`, r.text)
  const laterUsername = `${state.username}-later`
  const registered = await call('POST', '/api/auth/register', { username: laterUsername, password: state.password })
  check(registered.status === 201, `after the backup: register ${laterUsername} (${registered.servedBy})`, registered.text)
  writeFileSync(stateFile, JSON.stringify({ ...state, laterUsername }))
} else {
  const state = JSON.parse(readFileSync(stateFile, 'utf8'))
  const r = await refresh(state.refreshToken)
  check(r.status === 200 && typeof r.json?.accessToken === 'string', `the refresh token from before the backup is accepted (${r.servedBy})`, r.text)
  const m = await me(r.json.accessToken)
  check(m.status === 200 && m.json?.username === state.username, `/me with its new access token (${m.servedBy})`, m.text)
  const later = await call('POST', '/api/auth/login', { username: state.laterUsername, password: state.password, transport: 'body' })
  check(later.status === 401, `the account registered after the backup is gone: login 401 (${later.servedBy})`, later.text)
  const login = await call('POST', '/api/auth/login', { username: state.username, password: state.password, transport: 'body' })
  check(login.status === 200, `the account from before the backup logs in (${login.servedBy})`, login.text)
}
