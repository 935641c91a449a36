/**
 * argon2id through @node-rs/argon2 (native, on libuv's thread pool). The parameters are always
 * passed explicitly: the library's defaults are below every OWASP row. OWASP's baseline is
 * m=19456 KiB, t=2, p=1.
 *
 * At most `concurrency` hashes are handed to the pool at once (the service uses the pool size
 * minus one); the rest wait here, in order. The pool also does the file I/O and the other
 * asynchronous crypto: were a burst of logins queued in libuv itself, each of those would wait
 * behind every queued hash (tens of ms each). One thread is always left for them.
 */
import { randomBytes } from 'node:crypto'
import { hash, verify } from '@node-rs/argon2'
import pLimit from 'p-limit'

/** `Algorithm.Argon2id` (a const enum, which isolated modules cannot import). */
const ARGON2ID = 2

export interface Argon2Params {
  memoryCost: number
  timeCost: number
  parallelism: number
}

const PHC_PARAMS = /^\$argon2(?:id|i|d)\$v=(\d+)\$m=(\d+),t=(\d+),p=(\d+)\$/

/** True when `phc` was made with weaker parameters (or another variant) than `params`. */
export function needsRehash (phc: string, params: Argon2Params): boolean {
  const m = PHC_PARAMS.exec(phc)
  if (m === null || !phc.startsWith('$argon2id$') || Number(m[1]) !== 19) return true
  return Number(m[2]) < params.memoryCost || Number(m[3]) < params.timeCost || Number(m[4]) < params.parallelism
}

/** How many hashes the service runs at once with a thread pool of `threadPoolSize`: all but one thread. */
export const hashConcurrency = (threadPoolSize: number): number => Math.max(1, threadPoolSize - 1)

export async function createPasswordHasher (params: Argon2Params, concurrency = 1) {
  const options = { algorithm: ARGON2ID, outputLen: 32, ...params }
  const limit = pLimit(concurrency)
  const hashPassword = async (password: string): Promise<string> => await limit(async () => await hash(password, options))
  const verifyLimited = async (phc: string, password: string): Promise<boolean> => await limit(async () => await verify(phc, password))
  // A real hash at the configured cost, of a password nobody knows: logins for unknown
  // usernames verify against it so that they take as long as a wrong password does.
  const dummyHash = await hashPassword(randomBytes(32).toString('base64'))

  return {
    params,
    concurrency,
    /** Hashes waiting for a thread (not yet started). */
    get waiting (): number { return limit.pendingCount },
    /** Hashes running now. */
    get running (): number { return limit.activeCount },
    hash: hashPassword,
    async verify (phc: string, password: string): Promise<boolean> {
      try {
        return await verifyLimited(phc, password)
      } catch {
        return false
      }
    },
    /** Spends the same time as a real verification, and always fails. */
    async verifyDummy (password: string): Promise<false> {
      await verifyLimited(dummyHash, password).catch(() => false)
      return false
    },
    needsRehash: (phc: string) => needsRehash(phc, params)
  }
}

export type PasswordHasher = Awaited<ReturnType<typeof createPasswordHasher>>
