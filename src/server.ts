/**
 * Entry point: config from the environment, the app, listen. On SIGTERM/SIGINT the server
 * stops accepting, finishes in-flight requests and closes the database (close-with-grace);
 * a second signal or 10 s later it exits anyway.
 */
import './require-node.js'
import * as nodeModule from 'node:module'
import { registerFastResolve } from './tuning/fast-resolve.js'

// Start-up order matters here, which is why the service's modules are imported dynamically:
// 1. The resolver shortcut (fast-resolve.ts) must be in place before any package is loaded,
//    and so must Node's on-disk compile cache (NODE_COMPILE_CACHE, default <tmp>/node-compile-cache),
//    which spares later starts most of the compiling.
// 2. libuv reads UV_THREADPOOL_SIZE once, when its thread pool is first used (argon2 runs
//    there, and so do token signature checks, async fs and crypto); the configured size
//    (config.ts: the CPU count plus one, at least 3, unless UV_THREADPOOL_SIZE is set) is written to the environment before
//    anything that can use the pool is loaded. Loading config.js uses no pool.
registerFastResolve()
nodeModule.enableCompileCache?.()
const { ConfigError, databaseOpenError, loadConfig } = await import('./config.js')

let config
try {
  config = loadConfig(process.env)
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(`auth-service: ${err.message}`)
    process.exit(78) // EX_CONFIG
  }
  throw err
}
process.env.UV_THREADPOOL_SIZE = String(config.threadPoolSize)

// Until close-with-grace takes over below, a stop signal ends the start at once. Without a
// handler Node leaves SIGTERM to its default action, which the kernel does not apply to PID 1
// in a container: `docker stop` would wait out its grace period and kill. Whatever the start
// writes (migrations, the first signing key) is transactional, so nothing is left half-done.
const stopDuringStart = (signal: NodeJS.Signals): void => {
  process.stdout.write(JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, signal, msg: 'stopping during start' }) + '\n')
  process.exit(signal === 'SIGINT' ? 130 : 143)
}
process.once('SIGTERM', stopDuringStart)
process.once('SIGINT', stopDuringStart)
const { buildApp } = await import('./app.js')
const { default: closeWithGrace } = await import('close-with-grace')

let app
try {
  app = await buildApp(config)
} catch (err) {
  // A stored signing key that KEY_ENCRYPTION_KEY does not open: a setting to fix, not a crash.
  // A database path that cannot be opened for writing: likewise (plugins/db.ts).
  // A mail template in MAIL_TEMPLATES_DIR with an unknown placeholder: likewise.
  if (err instanceof Error && (err.name === 'KeyProtectionError' || err.name === 'MailTemplateError')) {
    console.error(`auth-service: ${err.message}`)
    process.exit(78) // EX_CONFIG
  }
  // A Redis (REDIS_URL) that does not answer: which one, not a stack (src/redis.ts).
  if (err instanceof Error && err.name === 'RedisUnavailableError') {
    console.error(`auth-service: ${err.message}`)
    process.exit(69) // EX_UNAVAILABLE
  }
  // A data directory the service's user cannot write: the path and the fix, not a stack.
  const cause = err instanceof Error && err.name === 'DatabaseOpenError' ? err.cause : err
  const message = (config.databaseKind === 'sqlite' ? databaseOpenError(cause, config.databasePath) : undefined) ?? (cause !== err ? (err as Error).message : undefined)
  if (message !== undefined) {
    console.error(`auth-service: ${message}`)
    process.exit(78) // EX_CONFIG
  }
  throw err
}

// The hasher has used the pool while the app was built, so its threads exist now.
if (config.threadPoolNice !== 0) {
  const { lowerThreadPoolPriority } = await import('./tuning/thread-priority.js')
  const priority = lowerThreadPoolPriority(config.threadPoolNice)
  if (priority.applied) app.log.info({ threads: priority.threads, nice: priority.nice }, 'thread pool runs below the event loop')
  else app.log.warn({ reason: priority.reason }, 'thread pool priority unchanged')
}

// A failed fsync of the WAL leaves the disk's state unknown (db/durability.ts): from then on
// every write is refused, and the process ends so that its supervisor starts it again and
// SQLite recovers from what really is on disk.
app.durability?.onFailure(() => {
  app.log.fatal('stopping: a restart recovers the database from what is on disk')
  // Requests in flight are answered (503); a kept-alive connection is not waited for.
  setTimeout(() => process.exit(1), 2000)
  void app.close().finally(() => process.exit(1))
})

process.off('SIGTERM', stopDuringStart)
process.off('SIGINT', stopDuringStart)
closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
  if (err !== undefined) app.log.error({ err }, 'shutting down after an error')
  else app.log.info({ signal }, 'shutting down')
  await app.close()
})

await app.listen({ host: config.host, port: config.port })
// A browser app opened at another address (127.0.0.1 for localhost, a remapped container port)
// has its cookie-mode calls refused: say up front which origins are accepted and why.
const cookieOrigins = [...new Set([config.publicOrigin, ...config.corsOrigins])]
app.log.info({ cookieOrigins }, `cookie mode accepts requests from ${cookieOrigins.join(', ')} (PUBLIC_URL, CORS_ORIGINS); open browser apps there`)
