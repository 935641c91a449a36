/**
 * Discovery for services that verify tokens offline: the JWK Set (public parameters only) and
 * a minimal OpenID-style configuration. The JWKS may be cached for JWKS_MAX_AGE, exactly the
 * lead time with which a new key is published before it signs.
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
    if (request.headers['if-none-match'] === etag) return reply.code(304).send(null)
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
    const algs = [config.jwt.algorithm]
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
