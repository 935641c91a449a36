import t from 'tap'
import { loadConfig } from '../src/config.js'
import { buildTestApp, TEST_ENV } from './helper.js'

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
