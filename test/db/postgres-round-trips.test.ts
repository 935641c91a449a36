/**
 * What a refresh and an authenticated request cost the database on PostgreSQL, seen on the
 * wire: a relay between the service and a real server reads the protocol messages the service
 * sends. A refresh is two round trips (the lookup, then the rotation as one statement) and an
 * authenticated request one; once a pooled connection has run them, they are sent without a
 * Parse (named statements, parsed and planned once per connection).
 */
import { connect, createServer, type Socket } from 'node:net'
import { once } from 'node:events'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { bearer, login, refreshWithBody, register, testConfig } from '../support/app.js'
import { freshPostgresDatabase, needsPostgres } from '../support/pg.js'

/** One round trip: a simple Query, or extended-protocol messages up to their Sync. */
interface Exchange { parses: number, statements: string[] }

/** Reads the frontend messages (type byte, then a length that counts itself) after the startup packet. */
function frontendReader (onExchange: (e: Exchange) => void): (chunk: Buffer) => void {
  let buffered = Buffer.alloc(0)
  let started = false
  let current: Exchange = { parses: 0, statements: [] }
  const cstring = (b: Buffer, at: number): [string, number] => {
    const end = b.indexOf(0, at)
    return [b.toString('utf8', at, end), end + 1]
  }
  return (chunk) => {
    buffered = Buffer.concat([buffered, chunk])
    for (;;) {
      if (!started) {
        if (buffered.length < 4) return
        const length = buffered.readInt32BE(0)
        if (buffered.length < length) return
        buffered = buffered.subarray(length)
        started = true
        continue
      }
      if (buffered.length < 5) return
      const type = String.fromCharCode(buffered[0]!)
      const length = buffered.readInt32BE(1)
      if (buffered.length < 1 + length) return
      const body = buffered.subarray(5, 1 + length)
      buffered = buffered.subarray(1 + length)
      if (type === 'Q') {
        onExchange({ parses: 0, statements: [cstring(body, 0)[0]] })
      } else if (type === 'P') {
        const [name, next] = cstring(body, 0)
        current.parses++
        if (name === '') current.statements.push(cstring(body, next)[0])
      } else if (type === 'B') {
        const [, next] = cstring(body, 0)
        const [statement] = cstring(body, next)
        if (statement !== '') current.statements.push(statement)
      } else if (type === 'S') {
        onExchange(current)
        current = { parses: 0, statements: [] }
      }
    }
  }
}

t.test('a refresh is two round trips and /me one, without re-parsing on a warm connection', needsPostgres, async (t) => {
  const { url } = await freshPostgresDatabase(t)
  const target = new URL(url)
  const sockets = new Set<Socket>()
  let seen: Exchange[] = []
  const relay = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname)
    for (const s of [client, upstream]) { sockets.add(s); s.on('close', () => sockets.delete(s)); s.on('error', () => {}) }
    client.on('data', frontendReader((e) => { seen.push(e) }))
    client.pipe(upstream).pipe(client)
  })
  relay.listen(0, '127.0.0.1')
  await once(relay, 'listening')
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => relay.close(() => resolve()))
  })
  const via = new URL(url)
  via.hostname = '127.0.0.1'
  via.port = String((relay.address() as { port: number }).port)
  // One pooled connection, so the second request of a kind runs where the first ran.
  const app = await buildApp(testConfig({ DATABASE_URL: via.toString(), DATABASE_POOL_SIZE: '1' }))
  t.teardown(() => app.close())

  t.equal((await register(app)).statusCode, 201)
  const { refreshToken, accessToken } = await login(app, { transport: 'body' })
  const first = await refreshWithBody(app, refreshToken)
  t.equal(first.statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/api/auth/me', headers: bearer(accessToken) })).statusCode, 200)

  seen = []
  const second = await refreshWithBody(app, first.json().refreshToken)
  t.equal(second.statusCode, 200)
  const refresh = seen
  t.equal(refresh.length, 2, `round trips of a refresh: ${JSON.stringify(refresh)}`)
  t.equal(refresh.reduce((n, e) => n + e.parses, 0), 0, 'no statement parsed again')

  seen = []
  t.equal((await app.inject({ method: 'GET', url: '/api/auth/me', headers: bearer(second.json().accessToken) })).statusCode, 200)
  const me = seen
  t.equal(me.length, 1, `round trips of /me: ${JSON.stringify(me)}`)
  t.equal(me.reduce((n, e) => n + e.parses, 0), 0, 'no statement parsed again')
})
