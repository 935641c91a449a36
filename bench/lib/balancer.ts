/**
 * What the several-instances scenario puts around the service: a Redis (the shared per-IP
 * limits and login throttle, as several instances run in production) and HAProxy in front.
 *
 * HAProxy, not a balancer written here: on two cores shared by the load generator, PostgreSQL
 * and the instances, a Node proxy would take most of a core of its own and the figure would
 * measure it. HAProxy runs with one thread in TCP mode (round robin over the connections, each
 * request passed through without being parsed), health-checked on /ready as compose.yaml's
 * balancer is. Both run as children of the harness (bench/lib/proc.ts): stopped with it.
 */
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pingRedis, REDIS_SERVER } from '../../test/support/redis-ping.js'
import { freePort, start, waitReady, type Child } from './proc.js'

const HAPROXY_PATHS = ['/usr/sbin/haproxy', '/usr/bin/haproxy', '/usr/local/sbin/haproxy']

export function haproxyPath (): string | null {
  return HAPROXY_PATHS.find((p) => existsSync(p)) ?? null
}

/** A redis-server on loopback, nothing saved to disk; null when there is none installed. */
export async function startRedis (runDir: string): Promise<{ child: Child, url: string } | null> {
  if (!existsSync(REDIS_SERVER)) return null
  const port = await freePort()
  const child = start({ name: 'redis', command: REDIS_SERVER, args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], env: {}, cwd: runDir, logFile: join(runDir, `redis-${port}.log`) })
  const deadline = Date.now() + 10_000
  while (!await pingRedis(port)) {
    if (child.process.exitCode !== null || Date.now() > deadline) {
      await child.stop()
      throw new Error(`redis-server did not start on port ${port}:\n${child.tail()}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return { child, url: `redis://127.0.0.1:${port}` }
}

/** HAProxy on a free loopback port in front of `ports`; resolves once /ready answers through it. */
export async function startHaproxy (runDir: string, ports: number[]): Promise<{ child: Child, url: string, port: number }> {
  const bin = haproxyPath()
  if (bin === null) throw new Error(`HAProxy is missing (${HAPROXY_PATHS.join(', ')}); apt-get install haproxy`)
  const port = await freePort()
  const config = join(runDir, `haproxy-${port}.cfg`)
  writeFileSync(config, [
    'global',
    '  nbthread 1',
    '  maxconn 4096',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    'frontend bench',
    `  bind 127.0.0.1:${port}`,
    '  default_backend instances',
    'backend instances',
    '  balance roundrobin',
    '  option httpchk GET /ready',
    ...ports.map((p, i) => `  server i${i + 1} 127.0.0.1:${p} check inter 2s`),
    ''
  ].join('\n'))
  const startedAt = performance.now()
  const child = start({ name: `haproxy-${port}`, command: bin, args: ['-db', '-f', config], env: {}, cwd: runDir, logFile: join(runDir, `haproxy-${port}.log`) })
  const url = `http://127.0.0.1:${port}`
  await waitReady(child, `${url}/ready`, startedAt)
  return { child, url, port }
}
