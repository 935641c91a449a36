import t from 'tap'
import { ConfigError, loadConfig, parseDuration, sharedCountersWarning } from '../../src/config.js'

t.test('defaults are the contract\'s and safe', async (t) => {
  const c = loadConfig({})
  t.match(c, {
    env: 'development',
    port: 3000,
    host: '127.0.0.1',
    publicUrl: 'http://localhost:3000',
    databasePath: 'data/auth.db',
    databaseSynchronous: 'FULL',
    logLevel: 'info',
    trustProxy: false,
    allowRegistration: true,
    corsOrigins: []
  })
  t.match(c.jwt, { issuer: 'http://localhost:3000', audience: 'http://localhost:3000', algorithm: 'ES256', accessTokenTtl: 900 })
  t.match(c.refresh, { ttl: 7 * 86400, sessionMaxAge: 30 * 86400, reuseInterval: 10, cookieName: 'refresh_token', cookieSameSite: 'Strict', transportDefault: 'cookie' })
  t.match(c.password, { minLength: 12, maxLength: 256, memoryCost: 19456, timeCost: 2, parallelism: 1 })
  t.equal(c.rateLimit.enabled, true)
  t.equal(c.threadPoolNice, 10, 'the thread pool runs below the event loop')
  t.equal(loadConfig({ THREAD_POOL_NICE: '0' }).threadPoolNice, 0)
  t.equal(loadConfig({ PORT: '8080' }).publicUrl, 'http://localhost:8080', 'PUBLIC_URL follows PORT')
})

t.test('durations: seconds or a number with s, m, h, d', async (t) => {
  t.equal(parseDuration('X', '900'), 900)
  t.equal(parseDuration('X', '15m'), 900)
  t.equal(parseDuration('X', '7d'), 604800)
  t.equal(parseDuration('X', '2h'), 7200)
  t.equal(parseDuration('X', '30s'), 30)
  for (const bad of ['15 minutes', '-5', 'soon', '1w', '']) t.throws(() => parseDuration('X', bad), ConfigError, bad)
  t.equal(loadConfig({ ACCESS_TOKEN_TTL: '5m' }).jwt.accessTokenTtl, 300)
})

t.test('DATABASE_URL accepts file:<path>, a plain path and :memory:', async (t) => {
  t.equal(loadConfig({ DATABASE_URL: 'file:/data/auth.db' }).databasePath, '/data/auth.db')
  t.equal(loadConfig({ DATABASE_URL: '/tmp/x.db' }).databasePath, '/tmp/x.db')
  t.equal(loadConfig({ DATABASE_URL: ':memory:' }).databasePath, ':memory:')
})

t.test('DATABASE_URL chooses the backend: postgres:// and postgresql:// are PostgreSQL, never a file path', async (t) => {
  const pg = loadConfig({ DATABASE_URL: 'postgres://auth:s3cret@db.internal:5432/auth' })
  t.equal(pg.databaseKind, 'postgres')
  t.equal(pg.databaseUrl, 'postgres://auth:s3cret@db.internal:5432/auth')
  t.notMatch(pg.databasePath, /s3cret/, 'the password never reaches what messages name')
  t.equal(loadConfig({ DATABASE_URL: 'postgresql://db.internal/auth' }).databaseKind, 'postgres')
  t.equal(loadConfig({ DATABASE_URL: 'file:/data/auth.db' }).databaseKind, 'sqlite')
  t.equal(loadConfig({ DATABASE_URL: 'data/auth.db' }).databaseKind, 'sqlite')
  t.equal(loadConfig({ DATABASE_URL: ':memory:' }).databaseKind, 'sqlite')
  t.equal(loadConfig({}).databaseKind, 'sqlite')
  t.match(pg, { databasePoolSize: 10, databaseStatementTimeoutMs: 5000, databaseSsl: 'disable' })
})

t.test('DATABASE_URL with any other scheme is refused, naming the variable', async (t) => {
  for (const url of ['mysql://db/auth', 'http://db/auth', 'sqlite://x.db', 'x:auth.db', 'redis://db']) {
    t.throws(() => loadConfig({ DATABASE_URL: url }), { name: 'ConfigError', message: /^DATABASE_URL: / }, url)
  }
})

t.test('PostgreSQL settings: pool size bounded, statement timeout, sslmode, CA file', async (t) => {
  const url = 'postgres://db/auth'
  t.equal(loadConfig({ DATABASE_URL: url, DATABASE_POOL_SIZE: '25' }).databasePoolSize, 25)
  t.throws(() => loadConfig({ DATABASE_URL: url, DATABASE_POOL_SIZE: '0' }), { message: /^DATABASE_POOL_SIZE: / })
  t.throws(() => loadConfig({ DATABASE_URL: url, DATABASE_POOL_SIZE: '100000' }), { message: /^DATABASE_POOL_SIZE: / })
  t.equal(loadConfig({ DATABASE_URL: url, DATABASE_STATEMENT_TIMEOUT_MS: '2500' }).databaseStatementTimeoutMs, 2500)
  t.throws(() => loadConfig({ DATABASE_URL: url, DATABASE_STATEMENT_TIMEOUT_MS: '-1' }), { message: /^DATABASE_STATEMENT_TIMEOUT_MS: / })
  t.equal(loadConfig({ DATABASE_URL: `${url}?sslmode=require` }).databaseSsl, 'require')
  t.equal(loadConfig({ DATABASE_URL: `${url}?sslmode=verify-full` }).databaseSsl, 'verify-full')
  t.throws(() => loadConfig({ DATABASE_URL: `${url}?sslmode=sometimes` }), { message: /^DATABASE_URL: .*sslmode/ })
  t.throws(() => loadConfig({ DATABASE_URL: `${url}?sslmode=verify-full`, DATABASE_SSL_CA: '/nonexistent/ca.pem' }), { message: /^DATABASE_SSL_CA: / })
  t.throws(() => loadConfig({ DATABASE_URL: 'postgres://db:notaport/auth' }), { message: /^DATABASE_URL: / })
})

t.test('invalid settings are refused with a message naming them', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ PORT: 'eighty' }, /PORT/],
    [{ JWT_ALGORITHM: 'none' }, /^JWT_ALGORITHM: 'none' is not allowed; use one of ES256, RS256, EdDSA, HS256$/],
    [{ JWT_ALGORITHM: 'HS256' }, /JWT_SECRET/],
    [{ REFRESH_COOKIE_SAMESITE: 'sometimes' }, /^REFRESH_COOKIE_SAMESITE: 'sometimes' is not allowed; use one of Strict, Lax, None$/],
    [{ CORS_ORIGINS: '*' }, /CORS_ORIGINS/],
    [{ CORS_ORIGINS: 'not a url' }, /CORS_ORIGINS/],
    [{ PUBLIC_URL: 'ftp://example.com' }, /PUBLIC_URL/],
    [{ REFRESH_TOKEN_TTL: '40d' }, /REFRESH_TOKEN_TTL must not exceed SESSION_MAX_AGE/],
    [{ ALLOW_REGISTRATION: 'maybe' }, /ALLOW_REGISTRATION/],
    [{ KEY_ENCRYPTION_KEY: 'short' }, /KEY_ENCRYPTION_KEY/],
    [{ THREAD_POOL_NICE: '20' }, /^THREAD_POOL_NICE: '20' is not allowed; use an integer from 0 to 19$/],
    [{ THREAD_POOL_NICE: '-5' }, /^THREAD_POOL_NICE: '-5' is not allowed/],
    [{ PORT: '99999' }, /^PORT: '99999' is not allowed; use an integer from 0 to 65535$/],
    [{ ACCESS_TOKEN_TTL: '0' }, /^ACCESS_TOKEN_TTL: '0' is not allowed; use a duration of at least 1s/],
    [{ RATE_LIMIT_REFRESH_WINDOW: '0' }, /^RATE_LIMIT_REFRESH_WINDOW: '0' is not allowed/],
    [{ THREAD_POOL_NICE: 'low' }, /THREAD_POOL_NICE/]
  ]
  for (const [env, message] of cases) t.throws(() => loadConfig(env), { name: 'ConfigError', message }, JSON.stringify(env))
})

t.test('NODE_ENV=production refuses unsafe settings and says why', async (t) => {
  const prod = { NODE_ENV: 'production', PUBLIC_URL: 'https://auth.example.com' }
  t.doesNotThrow(() => loadConfig(prod), 'safe defaults start')
  t.doesNotThrow(() => loadConfig({ NODE_ENV: 'production' }), 'loopback PUBLIC_URL over http is fine')
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ JWT_ALGORITHM: 'HS256', JWT_SECRET: 'short-secret' }, /JWT_SECRET must be at least 32 bytes/],
    [{ PUBLIC_URL: 'http://auth.example.com' }, /PUBLIC_URL .* must be https/],
    [{ ARGON2_MEMORY_KIB: '4096' }, /ARGON2_MEMORY_KIB/],
    [{ PASSWORD_MIN_LENGTH: '6' }, /PASSWORD_MIN_LENGTH/],
    [{ REFRESH_REUSE_INTERVAL: '5m' }, /REFRESH_REUSE_INTERVAL/],
    [{ ACCESS_TOKEN_TTL: '1d' }, /ACCESS_TOKEN_TTL/],
    [{ RATE_LIMIT_ENABLED: 'false' }, /RATE_LIMIT_ENABLED/],
    [{ DATABASE_URL: ':memory:' }, /DATABASE_URL/],
    [{ CORS_ORIGINS: 'http://app.example.com' }, /CORS_ORIGINS/]
  ]
  for (const [env, message] of cases) {
    t.throws(() => loadConfig({ ...prod, ...env }), { name: 'ConfigError', message: /refusing to start with NODE_ENV=production/ })
    t.throws(() => loadConfig({ ...prod, ...env }), { message }, JSON.stringify(env))
  }
  t.doesNotThrow(() => loadConfig({ ...prod, JWT_ALGORITHM: 'HS256', JWT_SECRET: 'x'.repeat(32) }))
})

t.test('TRUST_PROXY: a hop count or a list of proxy addresses; bare true is refused in production', async (t) => {
  t.equal(loadConfig({ TRUST_PROXY: '1' }).trustProxy, 1)
  t.equal(loadConfig({ TRUST_PROXY: '2' }).trustProxy, 2)
  t.equal(loadConfig({ TRUST_PROXY: '0' }).trustProxy, false)
  t.equal(loadConfig({ TRUST_PROXY: 'false' }).trustProxy, false)
  t.same(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1,::1, loopback' }).trustProxy, ['10.0.0.0/8', '127.0.0.1', '::1', 'loopback'])
  t.throws(() => loadConfig({ TRUST_PROXY: '10.0.0.0/8, proxy.example' }), /TRUST_PROXY: "proxy\.example" is not/)
  t.throws(() => loadConfig({ TRUST_PROXY: '10.0.0.0/33' }), /TRUST_PROXY/)
  const prod = { NODE_ENV: 'production', DATABASE_URL: 'file:/tmp/x.db', PUBLIC_URL: 'http://localhost:3000' }
  t.throws(() => loadConfig({ ...prod, TRUST_PROXY: 'true' }), /TRUST_PROXY=true/)
  t.equal(loadConfig({ ...prod, TRUST_PROXY: '1' }).trustProxy, 1)
})

t.test('REDIS_URL: a redis:// or rediss:// URL, anything else refused naming REDIS_URL (without repeating a password)', async (t) => {
  t.equal(loadConfig({}).redisUrl, null, 'unset: each instance counts alone, as today')
  t.equal(loadConfig({ REDIS_URL: '' }).redisUrl, null)
  t.equal(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379' }).redisUrl, 'redis://127.0.0.1:6379')
  t.equal(loadConfig({ REDIS_URL: ' rediss://user:secret@cache.example:6380/2 ' }).redisUrl, 'rediss://user:secret@cache.example:6380/2')
  for (const bad of ['http://cache.example:6379', 'cache.example:6379', 'localhost', 'postgres://cache.example', 'redis://']) {
    t.throws(() => loadConfig({ REDIS_URL: bad }), { name: 'ConfigError', message: /^REDIS_URL/ }, bad)
  }
  t.throws(() => loadConfig({ REDIS_URL: 'https://user:hunter2hunter2@cache.example' }), { message: /^(?!.*hunter2)/ }, 'the password is not repeated')
})

t.test('on PostgreSQL without REDIS_URL, the start warns that several instances would each count alone', async (t) => {
  const warning = sharedCountersWarning({ databaseUrl: 'postgres://auth@db.example/auth', redisUrl: null })
  t.match(warning, /REDIS_URL is unset: several instances would each count alone/)
  t.match(sharedCountersWarning({ databaseUrl: 'postgresql://db.example/auth', redisUrl: null }), /each count alone/)
  t.equal(sharedCountersWarning({ databaseUrl: 'postgres://db.example/auth', redisUrl: 'redis://cache.example' }), undefined, 'with Redis: nothing to warn about')
  t.equal(sharedCountersWarning({ databaseUrl: 'file:data/auth.db', redisUrl: null }), undefined, 'SQLite: one instance is the norm')
})
