/**
 * Discovery for services that verify tokens offline: the JWK Set (public parameters only) and
 * a minimal OpenID-style configuration. The JWKS may be cached for JWKS_MAX_AGE; a new key is
 * published at least that long (plus one KEY_CHECK_INTERVAL) before it signs, so a cached copy
 * always knows the key of any token a verifier meets. The HS256 secret is never published.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'

const JwksSchema = Type.Object({
  keys: Type.Array(Type.Object({
    kty: Type.String(),
    kid: Type.String(),
    alg: Type.String(),
    use: Type.String(),
    crv: Type.Optional(Type.String()),
    x: Type.Optional(Type.String()),
    y: Type.Optional(Type.String()),
    n: Type.Optional(Type.String()),
    e: Type.Optional(Type.String())
  }))
})

/** RFC 9110 §13.1.2: `*`, or a list of entity tags; comparison is weak (a `W/` prefix is ignored). */
export function matchesEtag (ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined) return false
  if (ifNoneMatch.trim() === '*') return true
  return ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag)
}

const wellKnown: FastifyPluginAsyncTypebox = async (app) => {
  const { config, keyRing } = app
  const base = config.publicUrl

  app.get('/.well-known/jwks.json', {
    schema: {
      summary: 'Public keys that verify this service\'s access tokens',
      tags: ['discovery'],
      response: { 200: JwksSchema, 304: Type.Null() }
    },
    config: { rateLimit: false }
  }, async (request, reply) => {
    const { body, etag } = keyRing.jwks()
    reply.header('cache-control', `public, max-age=${config.keys.jwksMaxAge}`).header('etag', etag)
    // 304: no body, no Content-Length or Content-Type of a body that is not there.
    if (matchesEtag(request.headers['if-none-match'], etag)) return reply.code(304).send(undefined as never)
    // Pre-serialised when the ring changes; sent as is.
    return reply.type('application/json; charset=utf-8').serializer((s: unknown) => s as string).send(body as never)
  })

  app.get('/.well-known/openid-configuration', {
    schema: {
      summary: 'Discovery document: issuer, JWKS URL, token endpoint, algorithms',
      tags: ['discovery'],
      response: {
        200: Type.Object({
          issuer: Type.String(),
          jwks_uri: Type.String(),
          token_endpoint: Type.String(),
          grant_types_supported: Type.Array(Type.String()),
          token_endpoint_auth_methods_supported: Type.Array(Type.String()),
          id_token_signing_alg_values_supported: Type.Array(Type.String()),
          access_token_signing_alg_values_supported: Type.Array(Type.String())
        })
      }
    },
    config: { rateLimit: false }
  }, async (_request, reply) => {
    // Every algorithm a published key uses (during a change of JWT_ALGORITHM, both), plus the
    // configured one: a verifier that pins algorithms from here accepts every valid token.
    const algs = [...new Set([...keyRing.algorithms(), config.jwt.algorithm])]
    reply.header('cache-control', `public, max-age=${config.keys.jwksMaxAge}`)
    return {
      issuer: config.jwt.issuer,
      jwks_uri: `${base}/.well-known/jwks.json`,
      token_endpoint: `${base}/api/auth/refresh`,
      grant_types_supported: ['password', 'refresh_token'],
      token_endpoint_auth_methods_supported: ['none'],
      id_token_signing_alg_values_supported: algs,
      access_token_signing_alg_values_supported: algs
    }
  })
}

export default wellKnown
