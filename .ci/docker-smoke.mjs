// The smoke test that .ci/docker-smoke.sh runs against the container, from outside it, the way
// a client and a token-verifying service would:
//
//   node .ci/docker-smoke.mjs first <base-url> <state-file>
//     register -> login (body mode) -> refresh -> verify the access token with jose against the
//     container's JWKS, issuer and audience from its discovery document; keeps what the second
//     phase needs in <state-file>.
//   node .ci/docker-smoke.mjs again <base-url> <state-file>
//     after the container was replaced (same data volume): the access token from before still
//     verifies against the JWKS (the signing key was kept), the refresh token from before still
//     rotates (the session was kept), and the user can log in.
//
// Prints one line per check; exits 1 at the first failure.
import { readFileSync, writeFileSync } from 'node:fs'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { check, client } from '../scripts/http-check.mjs'

const [phase, base, stateFile] = process.argv.slice(2)
if (!['first', 'again'].includes(phase) || !base || !stateFile) {
  console.error('usage: node .ci/docker-smoke.mjs first|again <base-url> <state-file>')
  process.exit(64)
}

const call = client(base)

async function verify (accessToken) {
  const discovery = await call('GET', '/.well-known/openid-configuration')
  check(discovery.status === 200, 'discovery document', String(discovery.status))
  const { issuer, jwks_uri: jwksUri } = discovery.json
  // jwks_uri is built from PUBLIC_URL, which the script sets to the published address.
  const jwks = createRemoteJWKSet(new URL(jwksUri))
  const { payload, protectedHeader } = await jwtVerify(accessToken, jwks, {
    issuer, audience: issuer, typ: 'at+jwt', algorithms: ['ES256', 'RS256', 'EdDSA']
  })
  return { payload, protectedHeader }
}

if (phase === 'first') {
  const username = `smoke-${Date.now().toString(36)}`
  const password = `smoke passphrase ${Math.random().toString(36).slice(2)}`
  const registered = await call('POST', '/api/auth/register', { username, password })
  check(registered.status === 201, `register ${username}`, registered.text)
  const login = await call('POST', '/api/auth/login', { username, password, transport: 'body' })
  check(login.status === 200 && typeof login.json.refreshToken === 'string', 'login (body mode)', login.text)
  check(login.headers.get('cache-control') === 'no-store', 'token response is Cache-Control: no-store')
  check(/^[0-9a-f-]{36}$/.test(login.headers.get('x-request-id') ?? ''), 'x-request-id header')
  const refreshed = await call('POST', '/api/auth/refresh', { refreshToken: login.json.refreshToken })
  check(refreshed.status === 200 && refreshed.json.refreshToken !== login.json.refreshToken, 'refresh rotates the token', refreshed.text)
  const { payload, protectedHeader } = await verify(refreshed.json.accessToken)
  check(payload.sub === registered.json.id && protectedHeader.typ === 'at+jwt', `access token verified with jose against the JWKS (kid ${protectedHeader.kid}, ${protectedHeader.alg})`)
  const me = await call('GET', '/api/auth/me', undefined, { authorization: `Bearer ${refreshed.json.accessToken}` })
  check(me.status === 200 && me.json.username === username, 'GET /api/auth/me with the access token')
  const docs = await call('GET', '/docs/json')
  check(docs.status === 200 && docs.json.openapi === '3.1.0', 'OpenAPI document at /docs/json')
  check((await call('GET', '/metrics')).status === 401, 'metrics refused without the scrape token')
  const metrics = await call('GET', '/metrics', undefined, { authorization: `Bearer ${process.env.METRICS_TOKEN}` })
  check(metrics.status === 200 && /auth_login_total\{outcome="success"\} 1/.test(metrics.text), 'metrics count the login')
  writeFileSync(stateFile, JSON.stringify({
    username, password, userId: registered.json.id, accessToken: refreshed.json.accessToken, refreshToken: refreshed.json.refreshToken
  }))
} else {
  const state = JSON.parse(readFileSync(stateFile, 'utf8'))
  const { payload } = await verify(state.accessToken)
  check(payload.sub === state.userId, 'the access token from before still verifies (signing key kept on the volume)')
  const refreshed = await call('POST', '/api/auth/refresh', { refreshToken: state.refreshToken })
  check(refreshed.status === 200, 'the refresh token from before still rotates (session kept)', refreshed.text)
  const login = await call('POST', '/api/auth/login', { username: state.username, password: state.password, transport: 'body' })
  check(login.status === 200, 'the user can still log in (account kept)', login.text)
}
