/**
 * Child processes for the benchmark: every server and every ceiling loop runs in its own
 * process, is registered here, and is stopped when the harness ends, whichever way it ends
 * (normal exit, an exception, Ctrl-C, SIGTERM). Nothing is left listening.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { openSync, readFileSync } from 'node:fs'
import { request } from 'node:http'
import { createServer } from 'node:net'

const children = new Set<ChildProcess>()
let exiting = false

function killAll (signal: NodeJS.Signals): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
  }
}

/** Installs the handlers that stop every child; call once at the start of the harness. */
export function stopChildrenOnExit (): void {
  process.on('exit', () => { killAll('SIGKILL') })
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (exiting) return
      exiting = true
      console.error(`\nbench: ${signal}, stopping ${children.size} child process(es)`)
      killAll('SIGTERM')
      setTimeout(() => { killAll('SIGKILL'); process.exit(130) }, 2000).unref()
      setTimeout(() => { process.exit(130) }, 300).unref()
    })
  }
}

export interface Child {
  name: string
  pid: number
  process: ChildProcess
  /** Resolves with the exit code (or the signal) when the process ends. */
  exited: Promise<number | string>
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop: (graceMs?: number) => Promise<number | string>
  /** The last lines of the child's output (its log file). */
  tail: (lines?: number) => string
}

export interface StartOptions {
  name: string
  command: string
  args: string[]
  env: NodeJS.ProcessEnv
  cwd: string
  /** stdout and stderr go to this file (a file, not a pipe: a pipe the harness forgot to drain would stall the server). */
  logFile: string
}

export function start (options: StartOptions): Child {
  const fd = openSync(options.logFile, 'a')
  const child = spawn(options.command, options.args, {
    cwd: options.cwd,
    env: options.env,
    stdio: ['ignore', fd, fd]
  })
  if (child.pid === undefined) throw new Error(`${options.name}: could not start ${options.command}`)
  children.add(child)
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child)
      resolve(code ?? signal ?? 'unknown')
    })
  })
  return {
    name: options.name,
    pid: child.pid,
    process: child,
    exited,
    async stop (graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return await exited
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      const result = await exited
      clearTimeout(timer)
      return result
    },
    tail (lines = 20) {
      try {
        return readFileSync(options.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
      } catch {
        return ''
      }
    }
  }
}

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => { resolve(port) })
    })
  })
}

function getStatus (url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'GET', timeout: 1000 }, (res) => {
      res.resume()
      res.once('end', () => { resolve(res.statusCode ?? 0) })
    })
    req.once('error', () => { resolve(0) })
    req.once('timeout', () => { req.destroy(); resolve(0) })
    req.end()
  })
}

/**
 * Polls `url` every few milliseconds until it answers 200; resolves with the milliseconds
 * since `startedAt`. Fails when the child exits first or after `timeoutMs`.
 */
export async function waitReady (child: Child, url: string, startedAt: number, timeoutMs = 30_000): Promise<number> {
  let gone: number | string | undefined
  void child.exited.then((code) => { gone = code })
  for (;;) {
    if (gone !== undefined) throw new Error(`${child.name} exited (${String(gone)}) before it was ready:\n${child.tail()}`)
    if (await getStatus(url) === 200) return performance.now() - startedAt
    if (performance.now() - startedAt > timeoutMs) throw new Error(`${child.name} was not ready after ${timeoutMs} ms:\n${child.tail()}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Resident memory of a process, from /proc (Linux): now, and the kernel's high-water mark. */
export function memoryOf (pid: number): { rssKb: number, hwmKb: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0)
    return { rssKb: field('VmRSS'), hwmKb: field('VmHWM') }
  } catch {
    return null
  }
}

/**
 * Samples a process's RSS every `intervalMs` until stopped; returns the highest value seen,
 * which is the larger of the samples and the kernel's VmHWM (peak since the process started).
 */
export function sampleMemory (pid: number, intervalMs = 100): { stop: () => number } {
  let peakKb = 0
  const take = (): void => {
    const m = memoryOf(pid)
    if (m !== null) peakKb = Math.max(peakKb, m.rssKb, m.hwmKb)
  }
  take()
  const timer = setInterval(take, intervalMs)
  return {
    stop () {
      take()
      clearInterval(timer)
      return peakKb
    }
  }
}

/** CPU time (user + system) a process has used so far, in milliseconds, from /proc (Linux). */
export function cpuMsOf (pid: number): number | null {
  try {
    // Fields after the command name (which may contain spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 10 // clock ticks of 10 ms (CLK_TCK = 100)
  } catch {
    return null
  }
}
