// A tiny service protected by the auth service's access tokens, for compose.yaml. It verifies
// each token offline, from the auth service's public JWK Set, with the project's verifier
// plugin, @auth-service/verifier (signature by kid, iss, aud, typ at+jwt, exp). It runs on the
// auth-service image, which already holds node, fastify, jose and the plugin.
//
//   GET /health        no token needed
//   GET /hello         any valid access token: who you are
//   GET /reports       only tokens whose roles include "admin"
//
// Outside this example: install @auth-service/verifier (packages/verifier/README.md: from a tarball
// packed from the repository, or the registry once published; NOT `npm i auth-service`, which is
// an unrelated package), or use any JOSE library given the JWKS URL, the issuer and the audience.
import Fastify from 'fastify'
import verifier from '@auth-service/verifier'

const issuer = process.env.AUTH_ISSUER ?? 'http://localhost:3000'
const audience = process.env.AUTH_AUDIENCE ?? issuer
// Fetched over the compose network; the tokens still name the public issuer.
const jwksUrl = process.env.AUTH_JWKS_URL ?? `${issuer}/.well-known/jwks.json`
const port = Number(process.env.PORT ?? 3001)

const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })
await app.register(verifier, { issuer, audience, jwksUrl })

app.get('/health', async () => ({ status: 'ok' }))

app.get('/hello', { onRequest: app.authenticate }, async (request) => ({
  hello: request.user.sub,
  roles: request.user.roles,
  session: request.user.sid,
  expiresAt: new Date(request.user.exp * 1000).toISOString()
}))

app.get('/reports', { onRequest: app.authenticate }, async (request, reply) => {
  if (!request.user.roles.includes('admin')) {
    return reply.code(403).send({ statusCode: 403, code: 'FORBIDDEN', message: 'admin role required' })
  }
  return { reports: ['logins-by-day', 'sessions-by-country'] }
})

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
}
await app.listen({ host: '0.0.0.0', port })
