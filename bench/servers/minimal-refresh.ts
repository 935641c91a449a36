/**
 * Baseline: the floor of what a refresh can cost. A hand-built node:http server that does only
 * what a rotation must: read the cookie, decrypt the token's selector, one better-sqlite3
 * IMMEDIATE transaction (find the token by id with its session, compare the SHA-256 of its
 * secret with the stored digest, spend it, insert the successor, link it, touch the session),
 * sign an ES256 access token, set the new cookie. No framework, no validation beyond the
 * token's own checks, no logging, no rate limiting, no metrics.
 *
 * It opens the database with the same settings as the service (DATABASE_SYNCHRONOUS,
 * DATABASE_CHECKPOINT, WAL, busy timeout, foreign keys) and, under FULL, keeps it the same way:
 * group commit, the answer written once the WAL's fdatasync covers the commit. So the ratio
 * between the two measures code, not durability.
 */
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import { createSigner } from 'fast-jwt'
import { createRefreshTokenCodec, hashRefreshToken, secretMatches } from '../../src/auth/refresh-token.js'
import { registerFastResolve } from '../../src/tuning/fast-resolve.js'

// As the service's entry point does, so that loading db/client.js (Drizzle) costs the same.
registerFastResolve()
const { openDatabase } = await import('../../db/client.js')
const { decodeKeyEncryptionKey, loadConfig } = await import('../../src/config.js')
const { createServerSecretsRepository } = await import('../../db/repositories/server-secrets.js')
const { loadServerSecret } = await import('../../src/keys/server-secret.js')

const path = process.env.DATABASE_URL?.replace(/^file:/, '')
if (path === undefined) throw new Error('DATABASE_URL is required')
// The service's settings as its config reads them (DATABASE_SYNCHRONOUS, DATABASE_CHECKPOINT and their defaults).
const { databaseSynchronous: synchronous, databaseCheckpoint: checkpoint, keys } = loadConfig({ ...process.env, NODE_ENV: 'development', DATABASE_URL: `file:${path}` })
// The service's own opener, for the same pragmas and checkpointing; only the raw connection is used.
const opened = openDatabase({ path, synchronous, checkpoint, groupCommit: true })
const db = opened.sqlite
const durability = opened.durability
// The key as the service reads it: sealed under KEY_ENCRYPTION_KEY once the service has started on the file.
const encryptionKey = keys.encryptionKey === undefined ? undefined : decodeKeyEncryptionKey(keys.encryptionKey)
const codec = createRefreshTokenCodec(await loadServerSecret(createServerSecretsRepository(opened.db), 'refresh-token-derivation', encryptionKey))

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const sign = createSigner({
  key: privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
  algorithm: 'ES256',
  kid: 'minimal',
  header: { alg: 'ES256', typ: 'at+jwt' },
  expiresIn: 900_000
})

const find = db.prepare(`SELECT t.id, t.token_hash AS tokenHash, t.session_id AS sessionId, t.spent_at AS spentAt, t.expires_at AS expiresAt,
    s.user_id AS userId, s.revoked_at AS revokedAt, s.expires_at AS sessionExpiresAt
  FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id WHERE t.id = CAST(? AS INTEGER)`)
const spend = db.prepare('UPDATE refresh_tokens SET spent_at = ? WHERE id = ? AND spent_at IS NULL')
const insert = db.prepare('INSERT INTO refresh_tokens (token_hash, session_id, parent_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?) RETURNING id')
const link = db.prepare('UPDATE refresh_tokens SET successor_id = ? WHERE id = ?')
const touch = db.prepare('UPDATE sessions SET last_used_at = ?, refresh_expires_at = ? WHERE id = ?')

interface Found { id: number, tokenHash: Buffer, sessionId: string, spentAt: number | null, expiresAt: number, userId: string, revokedAt: number | null, sessionExpiresAt: number }

const TTL_MS = 7 * 24 * 3600_000
const rotate = db.transaction((tokenId: number, secret: Buffer, successorHash: Buffer, now: number): { id: number, userId: string, sessionId: string, expiresAt: number } | null => {
  const row = find.get(tokenId) as Found | undefined
  if (row === undefined || !secretMatches(row.tokenHash, secret) || row.spentAt !== null || row.revokedAt !== null || row.expiresAt <= now || row.sessionExpiresAt <= now) return null
  if (spend.run(now, row.id).changes === 0) return null
  const expiresAt = Math.min(now + TTL_MS, row.sessionExpiresAt)
  const { id } = insert.get(successorHash, row.sessionId, row.id, now, expiresAt) as { id: number }
  link.run(id, row.id)
  touch.run(now, expiresAt, row.sessionId)
  return { id, userId: row.userId, sessionId: row.sessionId, expiresAt }
})
const immediate = rotate.immediate


const server = createServer((req, res) => {
  if (req.url === '/ready') { res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}'); return }
  req.resume()
  const cookie = /(?:^|;\s*)refresh_token=([A-Za-z0-9_-]{64})/.exec(req.headers.cookie ?? '')?.[1]
  const token = cookie === undefined ? null : codec.parse(cookie)
  const now = Date.now()
  const successor = randomBytes(32)
  const done = token === null ? null : immediate(token.id, token.secret, hashRefreshToken(successor), now)
  if (done === null) {
    res.writeHead(401, { 'content-type': 'application/json' }).end('{"statusCode":401,"code":"REFRESH_TOKEN_INVALID","message":"invalid"}')
    return
  }
  const accessToken = sign({ iss: 'http://localhost', aud: 'http://localhost', sub: done.userId, sid: done.sessionId, jti: randomUUID(), roles: ['user'] })
  const answer = (): void => {
    res.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'no-store',
      'set-cookie': `refresh_token=${codec.encode(done.id, successor)}; Max-Age=${Math.floor((done.expiresAt - now) / 1000)}; Path=/api/auth; HttpOnly; Secure; SameSite=Strict`
    }).end(JSON.stringify({ accessToken, tokenType: 'Bearer', expiresIn: 900 }))
  }
  if (durability === null) answer()
  else durability.sync().then(answer, () => { res.writeHead(503).end() })
})

process.once('SIGTERM', () => { server.close(); void opened.close().then(() => process.exit(0)) })
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1')
