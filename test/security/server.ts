/** Forwards to test/support/ for jwt-forgery.test.ts; remove once it imports test/support/ directly. */
export * from '../support/server.js'
export { claimsOf, headerOf } from '../support/jwt.js'
