/**
 * THREAD_POOL_NICE: the real entry point lowers the priority of libuv's pool threads (where
 * argon2 and token checks run) below the event loop's, and leaves everything alone with 0.
 * Read from /proc, as `ps -L -o tid,ni,comm` would show it.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { startServer } from '../../support/process.js'

/** name and nice value of every thread of `pid` (field 19 of /proc/<pid>/task/<tid>/stat). */
function threadNices (pid: number): Array<{ tid: number, name: string, nice: number }> {
  return readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      return [{ tid: Number(tid), name, nice: Number(fields[16]) }]
    } catch {
      return []
    }
  })
}

const linux = process.platform === 'linux'

t.test('the pool threads of the running service are niced; the event loop is not', { skip: !linux && 'Linux only' }, async (t) => {
  for (const [setting, expected] of [[undefined, 10], ['0', 0], ['19', 19]] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'auth-nice-'))
    t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
    const server = await startServer({
      NODE_ENV: 'test',
      DATABASE_URL: `file:${join(dir, 'auth.db')}`,
      ARGON2_MEMORY_KIB: '1024',
      ARGON2_TIME_COST: '1',
      UV_THREADPOOL_SIZE: '3',
      DEMO_ENABLED: 'false',
      ...(setting === undefined ? {} : { THREAD_POOL_NICE: setting })
    })
    try {
      const threads = threadNices(server.pid)
      const pool = threads.filter((th) => th.name === 'libuv-worker')
      t.equal(pool.length, 3, `${setting ?? 'default'}: the pool's three threads exist`)
      t.same(pool.map((th) => th.nice), [expected, expected, expected], `${setting ?? 'default'}: pool threads at nice ${expected}`)
      const main = threads.find((th) => th.tid === server.pid)
      t.equal(main?.nice, 0, `${setting ?? 'default'}: the event loop keeps nice 0`)
      // The service still answers, hashes included (they run on the niced threads).
      const res = await fetch(`${server.base}/api/auth/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'nice-user', password: 'a long enough password 1' })
      })
      t.equal(res.status, 201)
    } finally {
      await server.kill('SIGTERM')
    }
  }
})
