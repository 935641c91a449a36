/**
 * What the service takes from node:http, loaded through `require`. An ESM import of a built-in
 * module evaluates every export to build its namespace, and node:http's include getters for
 * WebSocket, CloseEvent and MessageEvent that load Node's bundled fetch implementation
 * (undici), which the service never uses (docs/decisions/0010-node-http-through-require.md).
 * test/src/tuning/node-http.test.ts checks that building the app does not load it.
 */
import { createRequire } from 'node:module'

const http = createRequire(import.meta.url)('node:http') as typeof import('node:http')

export const { STATUS_CODES, createServer } = http
