/**
 * Runs libuv's thread pool at a lower CPU priority than the event loop (THREAD_POOL_NICE,
 * default 10; 0 leaves it alone).
 *
 * Every request is parsed, checked and answered by the one event-loop thread; the pool does the
 * bulk work beside it: argon2 (10–15 ms per hash) and the signature check of every access
 * token. At the same priority, the kernel shares the CPUs fairly between all of them, so during
 * a burst of logins the event loop waits its turn behind the hashes, and under a flood of
 * `/me` each token check it hands to the pool wakes a pool thread that takes the event loop's
 * CPU away from it (measured on 2 cores: 30,000 involuntary context switches of the event loop
 * in 6 s, and a third of the CPU time idle). With the pool niced, the event loop runs whenever
 * it has work, the pool takes every cycle it leaves: `/me` +15–20 % on the same machine, login
 * unchanged (README, "Performance").
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
