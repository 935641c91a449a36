/**
 * Runs libuv's thread pool at a lower CPU priority than the event loop (THREAD_POOL_NICE,
 * default 10; 0 leaves it alone).
 *
 * Every request is parsed, checked and answered by the one event-loop thread; the pool does the
 * bulk work beside it: argon2 and the signature jobs of every token. At the same priority the
 * kernel shares the CPUs fairly between all of them, so during a burst of logins the event loop
 * waits its turn behind the hashes, and each short job it hands to the pool wakes a pool thread
 * that takes the event loop's CPU. With the pool niced, the event loop runs whenever it has
 * work and the pool takes every cycle it leaves. The price: a niced hash is preempted more
 * often, so logins are slower, and on a host shared with other busy processes the hashes yield
 * to those too. The trade and its figures: docs/decisions/0003-thread-pool-priority.md.
 *
 * Raising a thread's nice value needs no privilege. Linux only (`/proc/self/task` names the
 * threads, and setpriority(2) on a thread id applies to that thread alone); elsewhere nothing
 * changes. libuv starts all the pool's threads together on its first use, so call this after
 * something has used the pool (the password hasher does, while the app is built).
 */
import { readdirSync, readFileSync } from 'node:fs'
import { setPriority } from 'node:os'

/** The name libuv gives its pool threads. */
const POOL_THREAD = 'libuv-worker'

export type PriorityResult =
  | { applied: true, threads: number, nice: number }
  | { applied: false, reason: string }

export function lowerThreadPoolPriority (nice: number): PriorityResult {
  let tasks: string[]
  try {
    tasks = readdirSync('/proc/self/task')
  } catch {
    return { applied: false, reason: 'the threads cannot be listed on this platform (no /proc/self/task)' }
  }
  let threads = 0
  for (const tid of tasks) {
    let name: string
    try {
      name = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim()
    } catch {
      continue // the thread has just ended
    }
    if (name !== POOL_THREAD) continue
    try {
      setPriority(Number(tid), nice)
      threads++
    } catch (err) {
      return { applied: false, reason: `setpriority failed: ${(err as Error).message}` }
    }
  }
  if (threads === 0) return { applied: false, reason: `no ${POOL_THREAD} thread found (the pool has not started)` }
  return { applied: true, threads, nice }
}
