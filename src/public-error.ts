/**
 * Maps any error to what a client may see: our coded errors pass through; Fastify's own
 * client errors get a stable code; anything else is a 500 with a fixed message. Database
 * faults the client cannot fix (locked, read-only, disk full) are 503 with Retry-After.
 * No stack, SQL or internal message ever reaches the response.
 */
import { STATUS_CODES } from './tuning/node-http.js'
import type { Duplex } from 'node:stream'
import type { FastifyError } from 'fastify'

export interface PublicError {
  statusCode: number
  code: string
  retryAfter?: number
  body: { statusCode: number, code: string, message: string }
}

const make = (statusCode: number, code: string, message: string, retryAfter?: number): PublicError =>
  ({ statusCode, code, retryAfter, body: { statusCode, code, message } })

const FASTIFY_CODES: Record<string, [number, string, string]> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'UNSUPPORTED_MEDIA_TYPE', 'Unsupported content type; send application/json'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'BAD_REQUEST', 'Content-Length does not match the body'],
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'PAYLOAD_TOO_LARGE', 'The request body is too large'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'INVALID_JSON', 'The request body is empty but Content-Type is application/json'],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'INVALID_JSON', 'The request body is not valid JSON'],
  FST_ERR_CTP_EMPTY_TYPE: [415, 'UNSUPPORTED_MEDIA_TYPE', 'Unsupported content type; send application/json'],
  FST_ERR_CTP_INVALID_TYPE: [415, 'UNSUPPORTED_MEDIA_TYPE', 'Unsupported content type; send application/json'],
  FST_ERR_BAD_URL: [400, 'BAD_REQUEST', 'The URL is not valid'],
  FST_ERR_MAX_PARAM_LENGTH: [414, 'URI_TOO_LONG', 'A part of the URL is too long']
}

const DB_UNAVAILABLE = /^SQLITE_(BUSY|LOCKED|READONLY|FULL|IOERR|CANTOPEN|NOMEM|PROTOCOL)/

/**
 * PostgreSQL unreachable or unable to serve for now: SQLSTATE classes 08 (connection), 53
 * (insufficient resources: too many connections, disk full), 57P (server shutting down,
 * starting, restarting), 57014 (statement timeout), 40001/40P01 (serialization failure,
 * deadlock), 55P03 (lock not available); the network errors of a dropped or refused
 * connection; node-postgres's own words for a connection lost or not opened in time.
 */
const PG_UNAVAILABLE = /^(08...|53...|57P..|57014|40001|40P01|55P03)$/
const NET_UNAVAILABLE = /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN)$/
const PG_CLIENT_UNAVAILABLE = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Client was closed|Cannot use a pool after calling end)/

/** True when `err` (or an error it wraps: Drizzle wraps the driver's) says the database is out of reach for now. */
function databaseUnavailable (err: unknown): boolean {
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && (DB_UNAVAILABLE.test(code) || PG_UNAVAILABLE.test(code) || NET_UNAVAILABLE.test(code))) return true
    const message = (e as { message?: unknown }).message
    if (typeof message === 'string' && PG_CLIENT_UNAVAILABLE.test(message)) return true
  }
  return false
}

/** 503 codes of features that this server's settings leave off (src/errors.ts). */
const NOT_CONFIGURED = new Set(['TOTP_UNAVAILABLE', 'MAIL_DISABLED'])

export function toPublicError (err: FastifyError & { validationContext?: string }): PublicError {
  const code = typeof err.code === 'string' ? err.code : ''
  if (err.validation !== undefined) {
    return make(400, 'VALIDATION_FAILED', err.message)
  }
  const known = FASTIFY_CODES[code]
  if (known !== undefined) return make(...known)
  if (databaseUnavailable(err)) {
    return make(503, 'DATABASE_UNAVAILABLE', 'The database is temporarily unavailable; retry later', 5)
  }
  const status = err.statusCode ?? 500
  if (status >= 400 && status < 500) {
    if (/^[A-Z][A-Z0-9_]*$/.test(code) && !code.startsWith('FST_')) return make(status, code, err.message)
    // The static file servers (the demo, the API docs) refuse a path that climbs out of their
    // root with a bare 403, and a missing file with a bare 404: both are a file not found.
    if (status === 403 || status === 404) return make(404, 'NOT_FOUND', 'Not found')
    // A JSON syntax error (or another parser error) from Fastify: say what, not the parser's words.
    if (err instanceof SyntaxError || /JSON|prototype|constructor/i.test(err.message)) return make(400, 'INVALID_JSON', 'The request body is not valid JSON')
    return make(status, 'BAD_REQUEST', 'The request could not be understood')
  }
  if (status === 503 && (code === 'SERVICE_UNAVAILABLE' || code === 'THROTTLE_UNAVAILABLE')) return make(503, code, err.message, (err as { retryAfter?: number }).retryAfter ?? 5)
  // A feature this server's settings leave off: no fault that passes soon, but every 503 carries
  // Retry-After (docs/API.md), here an hour.
  if (status === 503 && NOT_CONFIGURED.has(code)) return make(503, code, err.message, 3600)
  return make(500, 'INTERNAL_ERROR', 'Internal server error')
}

/**
 * Requests that Node's HTTP parser refuses (a bare CR or LF in a header, a NUL, headers over
 * the size limit, a request that arrives too slowly) never reach Fastify's error handler.
 * Fastify's default answer to them has no `code`; this one has the same
 * `{ statusCode, code, message }` shape as every other error, then closes the connection.
 */
export function answerClientError (err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [statusCode, code, message] = err.code === 'HPE_HEADER_OVERFLOW'
    ? [431, 'HEADERS_TOO_LARGE', 'The request headers are too large']
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'REQUEST_TIMEOUT', 'The request was not received in time']
      : [400, 'BAD_REQUEST', 'The request could not be understood']
  const body = JSON.stringify({ statusCode, code, message })
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${statusCode} ${STATUS_CODES[statusCode] ?? ''}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Content-Type: application/json; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroy(err)
}
