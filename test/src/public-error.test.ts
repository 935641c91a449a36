/**
 * What a client is told when the database cannot serve: every PostgreSQL SQLSTATE of an outage
 * (classes 08 and 53, 57P01–57P05 while the server stops or starts, a statement timeout) and the
 * driver's errors of a lost connection answer 503 DATABASE_UNAVAILABLE with Retry-After, never a
 * 500; a constraint violation is still a fault of ours (500).
 */
import type { FastifyError } from 'fastify'
import t from 'tap'
import { MailDisabled } from '../../src/errors.js'
import { toPublicError } from '../../src/public-error.js'

/** As Drizzle throws them: its own error, the driver's as the cause. */
function drizzleError (cause: Error & { code?: string }): FastifyError {
  return Object.assign(new Error('Failed query: begin\nparams: ', { cause }), { name: 'DrizzleQueryError' }) as FastifyError
}
const pgError = (code: string, message: string): Error & { code: string } => Object.assign(new Error(message), { code })

t.test('database outages answer 503 DATABASE_UNAVAILABLE', async (t) => {
  const outages: Array<[string, Error]> = [
    ['57P01 admin shutdown (server restarting)', pgError('57P01', 'terminating connection due to administrator command')],
    ['57P02 crash shutdown', pgError('57P02', 'terminating connection due to crash of another server process')],
    ['57P03 cannot connect now (starting up)', pgError('57P03', 'the database system is starting up')],
    ['08006 connection failure', pgError('08006', 'connection failure')],
    ['53300 too many connections', pgError('53300', 'sorry, too many clients already')],
    ['57014 statement timeout', pgError('57014', 'canceling statement due to statement timeout')],
    ['ECONNREFUSED', pgError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432')],
    ['a connection lost mid-transaction', new Error('Client has encountered a connection error and is not queryable')],
    ['a connection ended', new Error('Connection terminated unexpectedly')]
  ]
  for (const [name, cause] of outages) {
    const answer = toPublicError(drizzleError(cause))
    t.match(answer, { statusCode: 503, body: { code: 'DATABASE_UNAVAILABLE' } }, name)
  }
})

t.test('other database errors stay 500', async (t) => {
  const answer = toPublicError(drizzleError(pgError('23505', 'duplicate key value violates unique constraint')))
  t.match(answer, { statusCode: 500, body: { code: 'INTERNAL_ERROR' } })
})

t.test('mail switched off answers 503 MAIL_DISABLED with Retry-After, not a 500', async (t) => {
  t.match(toPublicError(new MailDisabled()), { statusCode: 503, retryAfter: 3600, body: { statusCode: 503, code: 'MAIL_DISABLED', message: 'This service does not send mail' } })
})
