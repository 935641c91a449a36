/** Forwards to test/support/process.ts for test/keys/revoke.test.ts; remove once it imports that directly. */
export * from '../support/process.js'
