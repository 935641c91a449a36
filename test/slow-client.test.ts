/**
 * Slow clients against a listening server (real sockets): a body dribbled a byte at a time
 * is cut once REQUEST_TIMEOUT has passed (Node's headersTimeout, requestTimeout and its
 * connection check interval all come from that one setting), and requests that arrive while
 * the service shuts down get the usual error shape with Retry-After.
 */
import { connect, type Socket } from 'node:net'
import t from 'tap'
import { testConfig } from './support/app.js'
import { listen } from './support/server.js'

/** Resolves with everything the server sent once it closes the connection (or after `boundMs`: then `closed` is false). */
function collect (socket: Socket, boundMs: number): Promise<{ data: string, closed: boolean }> {
  return new Promise((resolve) => {
    let data = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => { data += chunk })
    const bound = setTimeout(() => { socket.destroy(); resolve({ data, closed: false }) }, boundMs)
    socket.on('close', () => { clearTimeout(bound); resolve({ data, closed: true }) })
    socket.on('error', () => {})
  })
}

t.test('REQUEST_TIMEOUT: seconds, 30 by default', async (t) => {
  t.equal(testConfig().requestTimeout, 30)
  t.equal(testConfig({ REQUEST_TIMEOUT: '2s' }).requestTimeout, 2)
  t.throws(() => testConfig({ REQUEST_TIMEOUT: '0' }), /requestTimeout|REQUEST_TIMEOUT/)
})

t.test('a body dribbled a byte at a time is cut with 408 REQUEST_TIMEOUT once REQUEST_TIMEOUT has passed', async (t) => {
  const { port } = await listen(t, { REQUEST_TIMEOUT: '1' })
  const socket = connect(port, '127.0.0.1')
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.write('POST /api/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{')
  // One byte every 100 ms keeps the socket from ever being idle; only the request deadline can end it.
  const drip = setInterval(() => { if (socket.writable) socket.write(' ') }, 100)
  const result = await collect(socket, 12_000)
  clearInterval(drip)
  t.ok(result.closed, 'the server closed the connection well before the body could finish (bounded wait of 12 s)')
  t.match(result.data, /^HTTP\/1\.1 408 /)
  t.match(result.data, /"code":"REQUEST_TIMEOUT"/)
})

t.test('a request arriving while the service shuts down: 503 SERVICE_UNAVAILABLE with Retry-After', async (t) => {
  const { app, port } = await listen(t)
  const socket = connect(port, '127.0.0.1')
  await new Promise((resolve) => socket.once('connect', resolve))
  const answers = collect(socket, 15_000)
  // A login in flight (its body not yet complete) keeps the server draining...
  const body = JSON.stringify({ username: 'nobody-here', password: 'irrelevant password' })
  socket.write(`POST /api/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 5)}`)
  await new Promise((resolve) => setTimeout(resolve, 200))
  const closed = app.close()
  // ...and a second request pipelined behind it arrives while it shuts down.
  socket.write(`${body.slice(5)}GET /api/auth/me HTTP/1.1\r\nHost: localhost\r\n\r\n`)
  const { data } = await answers
  await closed
  const responses = data.split(/(?=HTTP\/1\.1 )/)
  t.equal(responses.length, 2, 'both requests were answered')
  t.match(responses[0], /^HTTP\/1\.1 401 /, 'the one in flight is finished')
  const late = responses[1] ?? ''
  t.match(late, /^HTTP\/1\.1 503 /)
  t.match(late, /"code":"SERVICE_UNAVAILABLE"/)
  t.match(late.toLowerCase(), /\r\nretry-after: \d+\r\n/)
  t.match(late.toLowerCase(), /\r\nconnection: close\r\n/)
})
