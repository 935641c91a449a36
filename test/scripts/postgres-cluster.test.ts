/**
 * test/support/postgres-cluster.ts: the throwaway PostgreSQL cluster of the suite's PostgreSQL
 * pass. It answers on 127.0.0.1 with the settings the suite needs, and leaves nothing behind:
 * neither after stop() nor when its owner is killed with SIGKILL.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { createdObjects, findPostgresBin, startPostgresCluster } from '../support/postgres-cluster.js'
import { ROOT } from '../support/process.js'

t.setTimeout(180_000)
const skip = !('bin' in findPostgresBin()) && 'no PostgreSQL binaries'

const accepts = async (port: number): Promise<boolean> => await new Promise((resolve) => {
  const socket = connect(port, '127.0.0.1')
  socket.once('connect', () => { socket.destroy(); resolve(true) })
  socket.once('error', () => resolve(false))
})
const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }

/** Polls `done` every 250 ms for at most `ms`: a bound on a wait, not a timed assertion. */
async function eventually (done: () => Promise<boolean> | boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(250)) if (await done()) return true
  return await done()
}

t.test('a cluster on loopback with the settings of the suite; stop() removes it', { skip }, async (t) => {
  const cluster = await startPostgresCluster()
  t.teardown(cluster.stop)
  t.match(cluster.url, /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/)
  t.equal(cluster.psql('show listen_addresses'), '127.0.0.1')
  t.equal(cluster.psql('show max_connections'), '300')
  t.equal(cluster.psql('show fsync'), 'off')
  t.match(cluster.psql('show server_version'), /^\d+\.\d+/)
  t.same(createdObjects(cluster.logFile), { databases: 0, schemas: 0, tables: 0 }, 'nothing created yet')
  cluster.psql('create database runner_check')
  cluster.psql('create table t (a int)', 'runner_check')
  t.same(createdObjects(cluster.logFile), { databases: 1, schemas: 0, tables: 1 }, 'the DDL log counts what was created')
  await cluster.stop()
  t.notOk(await accepts(cluster.port), 'the port is closed after stop()')
  t.notOk(existsSync(cluster.dir), 'the directory is removed')
})

t.test('the owner killed with SIGKILL: the server stops and its directory goes', { skip }, async (t) => {
  const owner = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test', 'fixtures', 'postgres-cluster', 'owner.ts')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
  const [line] = await once(createInterface({ input: owner.stdout }), 'line') as [string]
  const { dir, port, postmaster } = JSON.parse(line) as { dir: string, port: number, postmaster: number }
  t.ok(await accepts(port), 'the cluster answers while its owner lives')
  t.ok(alive(postmaster), 'the postmaster runs')
  owner.kill('SIGKILL')
  await once(owner, 'exit')
  t.ok(await eventually(() => !alive(postmaster), 30_000), 'the postmaster is gone after the owner\'s death')
  t.ok(await eventually(async () => !(await accepts(port)), 5_000), 'the port is closed')
  t.ok(await eventually(() => !existsSync(dir), 10_000), 'the directory is removed')
})
