/**
 * The work done once per ring key, not once per token: @fastify/jwt keeps one fast-jwt verifier
 * per key only when `request.jwtVerify()` is called without options and the key function answers
 * a string (a Buffer, or options per call, build a new verifier and parse the key again on every
 * request); src/keys/access-tokens.ts keeps one fast-jwt signer per ring key. fast-jwt's own
 * `createVerifier` and `createSigner` are counted (wrapped, still doing their real work) before
 * the app loads, so the counts are those of the service's own modules.
 *
 * And the work done once per token, not once per request: a token presented again is answered
 * from the key verifier's cache, without a second signature check. node:crypto's functions that
 * fast-jwt checks signatures with are counted the same way, before fast-jwt takes them.
 */
import { createRequire } from 'node:module'
import t from 'tap'

const require = createRequire(import.meta.url)
const crypto = require('node:crypto') as Record<string, (...args: unknown[]) => unknown>
let cryptoCalls = 0
for (const name of ['createVerify', 'verify', 'createHmac']) {
  const real = crypto[name]!
  crypto[name] = (...args: unknown[]) => { cryptoCalls++; return real(...args) }
}
const fastJwt = require('fast-jwt') as Record<string, (...args: unknown[]) => unknown>
const made = { verifiers: 0, signers: 0 }
const createVerifier = fastJwt.createVerifier!
const createSigner = fastJwt.createSigner!
fastJwt.createVerifier = (...args: unknown[]) => { made.verifiers++; return createVerifier(...args) }
fastJwt.createSigner = (...args: unknown[]) => { made.signers++; return createSigner(...args) }

const { buildTestApp } = await import('../support/app.js')
const { ALGORITHMS, envFor, me, session } = await import('./support.js')

for (const alg of ALGORITHMS) {
  t.test(`${alg}: one verifier and one signer for the ring key, however many tokens`, async (t) => {
    const app = await buildTestApp(t, envFor(alg))
    const built = { ...made }
    const { token, payload } = await session(app)
    t.equal((await me(app, token)).statusCode, 200, 'the first token verifies')
    const before = { ...made }
    t.same(before, { verifiers: built.verifiers + 1, signers: built.signers + 1 }, 'the first token made the key\'s signer, its first verification the key\'s verifier')
    const issue = app.accessTokenIssuer(new Date())
    for (let i = 0; i < 5; i++) {
      const { accessToken } = await issue({ userId: String(payload.sub), sessionId: String(payload.sid), roles: ['user'] })
      t.equal((await me(app, accessToken)).statusCode, 200, `token ${i + 2} verifies`)
    }
    t.same(made, before, 'five more tokens signed and verified with the same key: no verifier or signer made')

    const { accessToken } = await issue({ userId: String(payload.sub), sessionId: String(payload.sid), roles: ['user'] })
    t.equal((await me(app, accessToken)).statusCode, 200, 'a new token verifies')
    const checked = cryptoCalls
    for (let i = 0; i < 3; i++) t.equal((await me(app, accessToken)).statusCode, 200, `presented again (${i + 1})`)
    t.equal(cryptoCalls, checked, 'the same token presented three more times: its signature is not checked again')
    await app.repos.sessions.revoke(String(payload.sid), 'logout', new Date())
    t.equal((await me(app, accessToken)).statusCode, 401, 'and the remembered token is refused once its session ends')
  })
}
