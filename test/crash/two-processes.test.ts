/**
 * Two server processes on one SQLite file. That is a supported setup (the rotation rules and
 * the key ring hold across processes: they share the database), but per-process state does
 * not: per-IP rate limits and the per-username login failure limit count apart in each
 * process. Each process must say so in its log, the one started first as well as the second.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { startServer, type ServerProcess } from '../support/process.js'
import { redisServer } from '../support/redis.js'

const WARNING = /another process uses this database/

t.test('two processes on one database file: both warn that per-process limits count apart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'auth-two-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const env = {
    NODE_ENV: 'test',
    DATABASE_URL: `file:${join(dir, 'auth.db')}`,
    PUBLIC_URL: 'http://localhost:3000',
    ARGON2_MEMORY_KIB: '1024',
    ARGON2_TIME_COST: '1',
    DEMO_ENABLED: 'false'
  }
  const servers: ServerProcess[] = []
  t.teardown(async () => { for (const s of servers) await s.kill() })
  const first = await startServer(env)
  servers.push(first)
  t.notMatch(first.stdout(), WARNING, 'alone: no warning')
  const second = await startServer(env)
  servers.push(second)
  t.match(second.stdout(), WARNING, 'the second process warns as it starts')
  // The first learns of the second at its next heartbeat (bounded wait).
  for (let i = 0; i < 300 && !WARNING.test(first.stdout()); i++) await new Promise((resolve) => setTimeout(resolve, 50))
  t.match(first.stdout(), WARNING, 'the first process warns too')
  t.match(second.stdout(), /rate limits/, 'the warning says what counts apart')

  t.equal((await second.kill('SIGTERM')).code, 0)
  t.equal((await first.kill('SIGTERM')).code, 0)
})

t.test('two processes on one database file sharing one Redis (REDIS_URL): nothing counts apart, so no warning', async (t) => {
  const redis = await redisServer(t)
  if (redis === null) return
  const dir = mkdtempSync(join(tmpdir(), 'auth-two-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const env = {
    NODE_ENV: 'test',
    DATABASE_URL: `file:${join(dir, 'auth.db')}`,
    REDIS_URL: redis.url,
    PUBLIC_URL: 'http://localhost:3000',
    ARGON2_MEMORY_KIB: '1024',
    ARGON2_TIME_COST: '1',
    DEMO_ENABLED: 'false'
  }
  const servers: ServerProcess[] = []
  t.teardown(async () => { for (const s of servers) await s.kill() })
  const first = await startServer(env)
  servers.push(first)
  const second = await startServer(env)
  servers.push(second)
  // Without REDIS_URL the second process warns as it starts (the test above).
  t.notMatch(second.stdout(), WARNING, 'the second process does not warn')
  t.equal((await second.kill('SIGTERM')).code, 0)
  t.equal((await first.kill('SIGTERM')).code, 0)
})
