/**
 * A throwaway redis-server on loopback for the tests that need a real one: started on a free
 * port with nothing saved to disk, ready once it answers PING, stopped at teardown (and killed
 * with the test process at the latest). `stop()` and `start()` let a test take it away and bring
 * it back on the same port mid-test, as an outage would.
 *
 * Where /usr/bin/redis-server is missing the test is skipped with the reason and null comes
 * back; under CI=true it fails instead (`.ci/run` installs the package).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import type { Test } from 'tap'
import { pingRedis, REDIS_SERVER } from './redis-ping.js'
import { freePort } from './server.js'

/** How long a start may take before the test fails. */
const START_LIMIT_MS = 10_000

export interface RedisServer {
  /** `redis://127.0.0.1:<port>`: what REDIS_URL is set to. */
  url: string
  port: number
  /** Stops the server (SIGTERM) and resolves once its process has exited. */
  stop: () => Promise<void>
  /** Starts it again on the same port, empty, and resolves once it answers PING. */
  start: () => Promise<void>
  /** Freezes the process (SIGSTOP): connections stay open and nothing answers, as a hung server. */
  freeze: () => void
  /** Lets a frozen process go on (SIGCONT). */
  thaw: () => void
}

export async function redisServer (t: Test): Promise<RedisServer | null> {
  if (!existsSync(REDIS_SERVER)) {
    const why = `${REDIS_SERVER} is missing (apt-get install redis-server)`
    if (process.env.CI === 'true') t.fail(why)
    else t.plan(0, `skipped: these tests need a real Redis; ${why}`)
    return null
  }
  const port = await freePort()
  let child: ChildProcess | null = null

  const start = async (): Promise<void> => {
    const proc = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] })
    child = proc
    let output = ''
    proc.stdout?.on('data', (c) => { output += c.toString() })
    proc.stderr?.on('data', (c) => { output += c.toString() })
    const deadline = Date.now() + START_LIMIT_MS
    while (!await pingRedis(port)) {
      if (proc.exitCode !== null || Date.now() > deadline) {
        proc.kill('SIGKILL')
        throw new Error(`redis-server did not start on port ${port}: ${output.trim().split('\n').slice(-3).join(' | ')}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  const stop = async (): Promise<void> => {
    const proc = child
    child = null
    if (proc === null || proc.exitCode !== null) return
    const exited = new Promise((resolve) => proc.once('exit', resolve))
    proc.kill('SIGCONT')
    proc.kill('SIGTERM')
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }
  // The server never outlives the test process, whatever happens to the teardown.
  const onExit = (): void => { child?.kill('SIGKILL') }
  process.once('exit', onExit)
  t.teardown(async () => { process.off('exit', onExit); await stop() })
  await start()
  const signal = (name: NodeJS.Signals) => () => { child?.kill(name) }
  return { url: `redis://127.0.0.1:${port}`, port, stop, start, freeze: signal('SIGSTOP'), thaw: signal('SIGCONT') }
}
