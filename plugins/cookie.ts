/**
 * Cookie parsing. The refresh cookie's policy (name, flags, path) lives in
 * routes/auth/refresh-transport.ts, the only file that reads or writes it.
 * @see https://github.com/fastify/fastify-cookie
 */
import fastifyCookie from '@fastify/cookie'
import fp from 'fastify-plugin'

export default fp(async function cookiePlugin (app) {
  await app.register(fastifyCookie, { parseOptions: {} })
}, { name: 'cookie', fastify: '5.x' })
