/**
 * Forwards to test/support/ for the test files still importing this path (keys, interop,
 * verifier, access-token-jitter, routes/me); remove once they import test/support/ directly.
 */
export * from './support/app.js'
export * from './support/clock.js'
export { decodeJwt } from './support/jwt.js'
