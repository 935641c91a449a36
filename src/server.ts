/**
 * Entry point: config from the environment, the app, listen. On SIGTERM/SIGINT the server
 * stops accepting, finishes in-flight requests and closes the database (close-with-grace);
 * a second signal or 10 s later it exits anyway.
 */
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config.js'

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

let app
try {
  app = await buildApp(config)
} catch (err) {
  // A stored signing key that KEY_ENCRYPTION_KEY does not open: a setting to fix, not a crash.
  if (err instanceof Error && err.name === 'KeyProtectionError') {
    console.error(`auth-service: ${err.message}`)
    process.exit(78) // EX_CONFIG
  }
  throw err
}

closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
  if (err !== undefined) app.log.error({ err }, 'shutting down after an error')
  else app.log.info({ signal }, 'shutting down')
  await app.close()
})

await app.listen({ host: config.host, port: config.port })
