/**
 * Runs the real entry point (src/server.ts, through tsx) as a child process on 127.0.0.1 and a
 * random free port (PORT=0; the port is read from the "Server listening at" log line), so a
 * test can SIGKILL it mid-request and start it again on the same database file. For the service
 * in this process, see server.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

export interface ServerProcess {
  base: string
  pid: number
  child: ChildProcess
  /** Resolves with the exit code / signal once the process has gone. */
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** The last lines the process wrote to stderr (for failure messages). */
  stderr: () => string
  /** The last lines the process wrote to stdout (its log). */
  stdout: () => string
  kill: (signal?: NodeJS.Signals) => Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/**
 * The settings of a service process on a database file in a test: cheap argon2, no per-IP rate
 * limits, no demo; `overrides` add or replace.
 */
export function serverEnv (databasePath: string, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'test',
    DATABASE_URL: `file:${databasePath}`,
    PUBLIC_URL: 'http://localhost:3000',
    ARGON2_MEMORY_KIB: '1024',
    ARGON2_TIME_COST: '1',
    RATE_LIMIT_ENABLED: 'false',
    DEMO_ENABLED: 'false',
    ...overrides
  }
}

/** The environment every child gets: no variable of the test's own process leaks into its config. */
function childEnv (env: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', TMPDIR: process.env.TMPDIR ?? '', HOST: '127.0.0.1', PORT: '0', ...env }
}

/**
 * Runs the entry point with `env` until it exits by itself, for configurations it must refuse
 * at start (killed after `timeoutMs` if it starts instead: the caller's exit-code check fails).
 */
export async function runToExit (env: Record<string, string>, timeoutMs = 60_000): Promise<{ code: number | null, stderr: string, stdout: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'server.ts')], { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  let stdout = ''
  child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
  child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const [code] = await once(child, 'exit') as [number | null]
  clearTimeout(timer)
  return { code, stderr, stdout }
}

/** `preload`: modules to load before the server (`--import`), for tests that change the process. */
export async function startServer (env: Record<string, string>, timeoutMs = 60_000, preload: string[] = []): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...preload.flatMap((p) => ['--import', p]), join(ROOT, 'src', 'server.ts')], {
    cwd: ROOT,
    env: childEnv({ LOG_LEVEL: 'info', ...env }),
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }))
  let errText = ''
  child.stderr!.setEncoding('utf8')
  child.stderr!.on('data', (chunk: string) => { errText = (errText + chunk).slice(-4000) })

  const lines = createInterface({ input: child.stdout! })
  let outText = ''
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`server did not start within ${timeoutMs} ms: ${errText}`)) }, timeoutMs)
    lines.on('line', (line) => {
      outText = (outText + line + '\n').slice(-16_000)
      const m = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(line)
      if (m !== null) { clearTimeout(timer); resolve(Number(m[1])) }
    })
    void exited.then(({ code, signal }) => { clearTimeout(timer); reject(new Error(`server exited (${String(code ?? signal)}) before listening: ${errText}`)) })
  })
  // Keep draining stdout (one log line per request) so the child never blocks on a full pipe,
  // and keep its last lines.
  lines.removeAllListeners('line')
  lines.on('line', (line) => { outText = (outText + line + '\n').slice(-16_000) })

  return {
    base: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    child,
    exited,
    stderr: () => errText,
    stdout: () => outText,
    kill: async (signal: NodeJS.Signals = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return await exited
    }
  }
}
