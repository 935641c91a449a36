/**
 * Baseline: the floor of what a refresh costs on PostgreSQL. A hand-built node:http server that
 * does only what a rotation must: read the cookie, decrypt the token's selector, one
 * transaction on one pooled connection (find the token by id with its session, compare the
 * SHA-256 of its secret with the stored digest, insert the successor, spend the parent only if
 * it is still unspent, touch the session), sign an ES256 access token, set the new cookie.
 * No framework, no validation beyond the token's own checks, no logging, no rate limiting, no
 * metrics; named (prepared) statements.
 *
 * Same driver, pool and connection settings as the service: `pg` through the service's own
 * opener (db/pg/client.ts) with DATABASE_POOL_SIZE and DATABASE_STATEMENT_TIMEOUT_MS as the
 * service's config reads them. The answer leaves after COMMIT has returned, as the service's
 * does, so the ratio between the two measures code, not durability.
 */
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import { createSigner } from 'fast-jwt'
import { createRefreshTokenCodec, hashRefreshToken, secretMatches } from '../../src/auth/refresh-token.js'
import { registerFastResolve } from '../../src/tuning/fast-resolve.js'

registerFastResolve()
const { openPostgres } = await import('../../db/pg/client.js')
const { decodeKeyEncryptionKey, loadConfig } = await import('../../src/config.js')
const { createPgServerSecretsRepository } = await import('../../db/repositories/pg/server-secrets.js')
const { loadServerSecret } = await import('../../src/keys/server-secret.js')

const config = loadConfig({ ...process.env, NODE_ENV: 'development' })
if (config.databaseKind !== 'postgres') throw new Error('DATABASE_URL must be a postgres:// URL')
const { db, pool } = openPostgres({ url: config.databaseUrl, poolSize: config.databasePoolSize, statementTimeoutMs: config.databaseStatementTimeoutMs, ssl: config.databaseSsl })
const encryptionKey = config.keys.encryptionKey === undefined ? undefined : decodeKeyEncryptionKey(config.keys.encryptionKey)
const codec = createRefreshTokenCodec(await loadServerSecret(createPgServerSecretsRepository(db), 'refresh-token-derivation', encryptionKey))

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const sign = createSigner({
  key: privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
  algorithm: 'ES256',
  kid: 'minimal',
  header: { alg: 'ES256', typ: 'at+jwt' },
  expiresIn: 900_000
})

const FIND = `SELECT t.token_hash, t.session_id, t.spent_at, t.expires_at, s.user_id, s.revoked_at, s.expires_at AS session_expires_at
  FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id WHERE t.id = $1`
const INSERT = 'INSERT INTO refresh_tokens (token_hash, session_id, parent_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) RETURNING id'
const SPEND = 'UPDATE refresh_tokens SET spent_at = $1, successor_id = $2 WHERE id = $3 AND spent_at IS NULL'
const TOUCH = 'UPDATE sessions SET last_used_at = $1, refresh_expires_at = $2 WHERE id = $3'

interface Found { token_hash: Buffer, session_id: string, spent_at: Date | null, expires_at: Date, user_id: string, revoked_at: Date | null, session_expires_at: Date }

const TTL_MS = 7 * 24 * 3600_000

/** The rotation, in one transaction: the successor's id, or null when the token does not rotate. */
async function rotate (tokenId: number, secret: Buffer, successorHash: Buffer, now: Date): Promise<{ id: number, userId: string, sessionId: string, expiresAt: number } | null> {
  const client = await pool.connect()
  let broken: Error | undefined
  try {
    await client.query('BEGIN')
    const row = (await client.query<Found>({ name: 'find', text: FIND, values: [tokenId] })).rows[0]
    const t = now.getTime()
    if (row === undefined || !secretMatches(row.token_hash, secret) || row.spent_at !== null || row.revoked_at !== null || row.expires_at.getTime() <= t || row.session_expires_at.getTime() <= t) {
      await client.query('ROLLBACK')
      return null
    }
    const expiresAt = Math.min(t + TTL_MS, row.session_expires_at.getTime())
    const inserted = await client.query<{ id: string }>({ name: 'insert', text: INSERT, values: [successorHash, row.session_id, tokenId, now, new Date(expiresAt)] })
    const id = Number(inserted.rows[0]!.id)
    const spent = await client.query({ name: 'spend', text: SPEND, values: [now, id, tokenId] })
    if (spent.rowCount !== 1) {
      await client.query('ROLLBACK')
      return null
    }
    await client.query({ name: 'touch', text: TOUCH, values: [now, new Date(expiresAt), row.session_id] })
    await client.query('COMMIT')
    return { id, userId: row.user_id, sessionId: row.session_id, expiresAt }
  } catch (err) {
    broken = err as Error
    throw err
  } finally {
    client.release(broken)
  }
}

const unauthorized = '{"statusCode":401,"code":"REFRESH_TOKEN_INVALID","message":"invalid"}'

const server = createServer((req, res) => {
  if (req.url === '/ready') { res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}'); return }
  req.resume()
  const cookie = /(?:^|;\s*)refresh_token=([A-Za-z0-9_-]{64})/.exec(req.headers.cookie ?? '')?.[1]
  const token = cookie === undefined ? null : codec.parse(cookie)
  if (token === null) { res.writeHead(401, { 'content-type': 'application/json' }).end(unauthorized); return }
  const now = new Date()
  const successor = randomBytes(32)
  rotate(token.id, token.secret, hashRefreshToken(successor), now).then((done) => {
    if (done === null) { res.writeHead(401, { 'content-type': 'application/json' }).end(unauthorized); return }
    const accessToken = sign({ iss: 'http://localhost', aud: 'http://localhost', sub: done.userId, sid: done.sessionId, jti: randomUUID(), roles: ['user'] })
    res.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'no-store',
      'set-cookie': `refresh_token=${codec.encode(done.id, successor)}; Max-Age=${Math.floor((done.expiresAt - now.getTime()) / 1000)}; Path=/api/auth; HttpOnly; Secure; SameSite=Strict`
    }).end(JSON.stringify({ accessToken, tokenType: 'Bearer', expiresIn: 900 }))
  }, () => { res.writeHead(503).end() })
})

process.once('SIGTERM', () => { server.close(); void pool.end().then(() => process.exit(0)) })
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1')
