import { connect, type AddressInfo } from 'node:net'
import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { buildTestApp, TEST_ENV } from '../support/app.js'
import { listen } from '../support/server.js'

t.test('the demo is served at /demo/ with a strict Content-Security-Policy', async (t) => {
  const app = await buildTestApp(t, { DEMO_ENABLED: 'true', DEMO_API_URL: 'https://auth.example.com/' })
  const redirect = await app.inject({ url: '/demo' })
  t.equal(redirect.statusCode, 302)
  t.equal(redirect.headers.location, '/demo/')
  const page = await app.inject({ url: '/demo/' })
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /^text\/html/)
  t.match(page.body, /<script type="module" src="demo.js"><\/script>/)
  const csp = String(page.headers['content-security-policy'])
  t.match(csp, /default-src 'none'/)
  t.match(csp, /script-src 'self'(;|$)/, 'no inline script')
  t.match(csp, /connect-src 'self' https:\/\/auth\.example\.com(;|$)/)
  t.match(csp, /frame-ancestors 'none'/)
  t.equal(page.headers['x-content-type-options'], 'nosniff')
  t.same((await app.inject({ url: '/demo/config.json' })).json(), { apiOrigin: 'https://auth.example.com' })
  t.equal((await app.inject({ url: '/demo/demo.css' })).statusCode, 200)
  t.equal((await app.inject({ url: '/demo/../package.json' })).statusCode, 404)
})

t.test('the client library and the demo script are served as JavaScript modules', async (t) => {
  const app = await buildTestApp(t, { DEMO_ENABLED: 'true' })
  for (const name of ['auth-client', 'demo']) {
    const res = await app.inject({ url: `/demo/${name}.js` })
    t.equal(res.statusCode, 200, name)
    t.match(res.headers['content-type'], /^text\/javascript/)
    t.notMatch(res.body, /\binterface\b|: string\b/, 'no TypeScript left')
  }
  t.match((await app.inject({ url: '/demo/auth-client.js' })).body, /export function createAuthClient/)
})

t.test('DEMO_ENABLED: on by default in development, off in production; off means 404', async (t) => {
  t.equal(loadConfig({ ...TEST_ENV, NODE_ENV: 'development' }).demo.enabled, true)
  t.equal(loadConfig({ NODE_ENV: 'production', DATABASE_URL: 'file:/tmp/x.db' }).demo.enabled, false)
  t.throws(() => loadConfig({ ...TEST_ENV, DEMO_API_URL: 'ftp://x' }), /DEMO_API_URL/)
  const app = await buildTestApp(t, { DEMO_ENABLED: 'false' })
  for (const url of ['/demo', '/demo/', '/demo/auth-client.js', '/demo/config.json']) {
    const res = await app.inject({ url })
    t.equal(res.statusCode, 404, url)
    t.equal(res.json().code, 'NOT_FOUND')
  }
})

/** One raw request line as a client may send it (no normalisation of the path on the way). */
function rawGet (port: number, path: string): Promise<{ status: number, headers: string, body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => { socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`) })
    let data = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => { data += chunk })
    socket.on('end', () => {
      const [head = '', body = ''] = data.split('\r\n\r\n')
      resolve({ status: Number(head.split(' ')[1]), headers: head.toLowerCase(), body })
    })
    socket.on('error', reject)
  })
}

t.test('path traversal under the static prefixes answers 404 NOT_FOUND, never 403 BAD_REQUEST', async (t) => {
  const { port } = await listen(t, { DEMO_ENABLED: 'true' })
  const attempts = ['..%2f..%2fpackage.json', '%2e%2e/', '%2e%2e/package.json', '..', '../package.json', '.%2e/', '..%5cpackage.json', '%2e%2e%5c', '..//']
  for (const prefix of ['/demo/', '/docs/static/']) {
    for (const attempt of attempts) {
      const res = await rawGet(port, prefix + attempt)
      t.equal(res.status, 404, `${prefix}${attempt}: 404`)
      t.match(res.body, /"code":"NOT_FOUND"/, `${prefix}${attempt}: NOT_FOUND`)
      t.notMatch(res.body, /"name"\s*:\s*"auth-service"/, 'nothing outside the root is served')
    }
  }
})

t.test('X-Content-Type-Options: nosniff on every response, errors and static files included', async (t) => {
  const app = await buildTestApp(t, { DEMO_ENABLED: 'true' })
  const urls = ['/health', '/ready', '/.well-known/jwks.json', '/.well-known/openid-configuration', '/no/such/path', '/api/auth/me',
    '/demo/', '/demo/demo.css', '/demo/auth-client.js', '/demo/config.json', '/demo', '/metrics', '/docs/json', '/docs/static/..%5c']
  for (const url of urls) {
    const res = await app.inject({ url })
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${url} (${res.statusCode})`)
  }
  const bad = await app.inject({ method: 'POST', url: '/api/auth/login', headers: { 'content-type': 'application/json' }, payload: '{"oops' })
  t.equal(bad.statusCode, 400)
  t.equal(bad.headers['x-content-type-options'], 'nosniff', 'a JSON parse error')
  const badUrl = await app.inject({ url: '/api/auth/%c0' })
  t.equal(badUrl.headers['x-content-type-options'], 'nosniff', `a malformed URL (${badUrl.statusCode})`)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  const overflow = await new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => { socket.write(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`) })
    let data = ''
    socket.setEncoding('utf8')
    socket.on('data', (c: string) => { data += c })
    socket.on('close', () => { resolve(data) })
    socket.on('error', reject)
  })
  t.match(overflow, /^HTTP\/1\.1 431/)
  t.match(overflow.toLowerCase(), /x-content-type-options: nosniff/, 'a request Node refuses before Fastify')
})
