/**
 * Where redis-server is and whether one answers: shared by the tests' throwaway Redis
 * (test/support/redis.ts) and the benchmark's (bench/lib/balancer.ts). Self-contained (Node's
 * net only), so that the benchmark harness does not load the test support's app modules.
 */
import { connect } from 'node:net'

export const REDIS_SERVER = '/usr/bin/redis-server'

/** Resolves true once a PING on 127.0.0.1:`port` gets PONG; false when nothing answers within a second. */
export async function pingRedis (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    let reply = ''
    const done = (ok: boolean): void => { socket.destroy(); resolve(ok) }
    socket.setTimeout(1000, () => done(false))
    socket.on('error', () => done(false))
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk) => { reply += chunk.toString(); if (reply.includes('\r\n')) done(reply.startsWith('+PONG')) })
  })
}
