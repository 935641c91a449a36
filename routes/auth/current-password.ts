/**
 * The re-entered password of an authenticated request that changes something sensitive (the
 * address, deleting the account): checked as POST /password checks the current password. A
 * wrong one is a guess at the account's password and counts in the same per-account limit as
 * failed logins, reserved before hashing; past the limit the calling session ends, so a stolen
 * access token cannot go on guessing.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { normalizeUsername, usernameFold } from '../../src/auth/credentials.js'
import { InvalidCurrentPassword, RateLimited } from '../../src/errors.js'

export async function checkCurrentPassword (
  app: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
  user: { id: string, username: string, passwordHash: string },
  password: string,
  now: Date
): Promise<void> {
  const { loginThrottle, passwords, repos } = app
  const { sessionId } = request.principal!
  const key = usernameFold(normalizeUsername(user.username))
  const reservation = await loginThrottle.reserve(key, now)
  if (!reservation.ok) {
    await repos.sessions.revoke(sessionId, 'password_guessing', now)
    request.log.info({ userId: user.id, sessionId }, 'password re-entry throttled; session ended')
    app.audit.record(request, 'session_revoked', { userId: user.id, sessionId, detail: { reason: 'password_guessing' } }, now)
    reply.header('retry-after', reservation.retryAfter)
    throw new RateLimited(String(reservation.retryAfter))
  }
  if (!await passwords.verify(user.passwordHash, password.normalize('NFKC'))) {
    await loginThrottle.release(key, now, 'failed')
    throw new InvalidCurrentPassword()
  }
  await loginThrottle.reset(key, now)
}
