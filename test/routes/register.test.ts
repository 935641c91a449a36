import { dictionary } from '@zxcvbn-ts/language-common'
import t from 'tap'
import { buildTestApp, PASSWORD, register } from '../support/app.js'
import { rows } from '../support/db.js'

t.test('201 with the account, roles default to ["user"], username shown as registered', async (t) => {
  const app = await buildTestApp(t)
  const res = await register(app, '  Alice.Smith+test@example.com ')
  t.equal(res.statusCode, 201)
  const body = res.json()
  t.match(body, { id: /^[0-9a-f-]{36}$/, username: 'Alice.Smith+test@example.com', roles: ['user'] })
  t.ok(Number.isFinite(Date.parse(body.createdAt)) && body.createdAt.endsWith('Z'), 'createdAt is ISO 8601 UTC')
  t.same(Object.keys(body).sort(), ['createdAt', 'email', 'emailVerified', 'id', 'roles', 'username'])
  t.match(body, { email: null, emailVerified: false }, 'no address given')
})

t.test('usernames are NFKC-normalised and unique case-insensitively: 409', async (t) => {
  const app = await buildTestApp(t)
  t.equal((await register(app, 'alice')).statusCode, 201)
  const dup = await register(app, 'ALICE')
  t.equal(dup.statusCode, 409)
  t.same(dup.json(), { statusCode: 409, code: 'USERNAME_TAKEN', message: 'This username is not available' })
  // Fullwidth letters normalise (NFKC) to the same name.
  t.equal((await register(app, 'ａｌｉｃｅ')).statusCode, 409)
})

t.test('invalid usernames: 400 INVALID_USERNAME or VALIDATION_FAILED', async (t) => {
  const app = await buildTestApp(t)
  for (const name of ['ab', 'a'.repeat(65), 'has space', 'semi;colon', 'slash/', '<script>', '   ']) {
    const res = await register(app, name)
    t.equal(res.statusCode, 400, name)
    t.match(res.json().code, /^(INVALID_USERNAME|VALIDATION_FAILED)$/, name)
  }
  t.equal((await register(app, 'a'.repeat(64))).statusCode, 201, '64 characters are fine')
  t.equal((await register(app, 'Zoë_ß-1')).statusCode, 201, 'letters of any script are fine')
})

t.test('password rules: min length (configurable), max 256, common list, no composition rules', async (t) => {
  const app = await buildTestApp(t)
  const short = await register(app, 'bob', 'a'.repeat(11))
  t.equal(short.statusCode, 400)
  t.equal(short.json().code, 'WEAK_PASSWORD')
  t.equal((await register(app, 'bob1', 'a'.repeat(257))).statusCode, 400, '257 characters refused before hashing')
  const common = (dictionary['passwords-common'] as string[]).find((p) => p.length >= 12)!
  const res = await register(app, 'bob2', common)
  t.equal(res.statusCode, 400, `"${common}" is on the common list`)
  t.equal(res.json().code, 'WEAK_PASSWORD')
  t.equal((await register(app, 'bob3', common.toUpperCase())).statusCode, 400, 'the list is case-insensitive')
  t.equal((await register(app, 'bob4', 'all lowercase words only')).statusCode, 201, 'no composition rules')
  t.equal((await register(app, 'bob5', 'é'.repeat(12))).statusCode, 201, 'length counts characters, not bytes')

  const strict = await buildTestApp(t, { PASSWORD_MIN_LENGTH: '20' })
  t.equal((await register(strict, 'carol', 'x'.repeat(19) + 'y')).statusCode, 201)
  t.equal((await register(strict, 'dave', 'x'.repeat(18) + 'y')).statusCode, 400)
})

t.test('unknown fields are stripped: a client cannot give itself roles', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/api/auth/register', payload: { username: 'mallory', password: PASSWORD, roles: ['admin'], id: 'chosen' } })
  t.equal(res.statusCode, 201)
  t.same(res.json().roles, ['user'])
  t.not(res.json().id, 'chosen')
})

t.test('the password is stored as an argon2id PHC string with the configured parameters', async (t) => {
  const app = await buildTestApp(t, { ARGON2_MEMORY_KIB: '2048', ARGON2_TIME_COST: '2' })
  await register(app)
  const [row] = await rows<{ password_hash: string }>(app, 'SELECT password_hash FROM users')
  t.match(row!.password_hash, /^\$argon2id\$v=19\$m=2048,t=2,p=1\$/)
  t.notMatch(row!.password_hash, PASSWORD)
})

t.test('403 REGISTRATION_DISABLED when ALLOW_REGISTRATION=false', async (t) => {
  const app = await buildTestApp(t, { ALLOW_REGISTRATION: 'false' })
  const res = await register(app)
  t.equal(res.statusCode, 403)
  t.equal(res.json().code, 'REGISTRATION_DISABLED')
})

t.test('malformed requests are 4xx JSON errors, never 500', async (t) => {
  const app = await buildTestApp(t)
  const cases: Array<[string, Record<string, string>, string | undefined, number, string]> = [
    ['bad json', { 'content-type': 'application/json' }, '{"username":', 400, 'INVALID_JSON'],
    ['empty json', { 'content-type': 'application/json' }, '', 400, 'INVALID_JSON'],
    ['not an object', { 'content-type': 'application/json' }, '"alice"', 400, 'VALIDATION_FAILED'],
    ['wrong types', { 'content-type': 'application/json' }, '{"username":1,"password":2}', 400, 'VALIDATION_FAILED'],
    ['missing field', { 'content-type': 'application/json' }, '{"username":"alice"}', 400, 'VALIDATION_FAILED'],
    ['wrong content type', { 'content-type': 'application/xml' }, '<a/>', 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['form encoded', { 'content-type': 'application/x-www-form-urlencoded' }, 'username=a&password=b', 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['text/plain json', { 'content-type': 'text/plain' }, '{"username":"alice","password":"correct horse battery"}', 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['prototype pollution', { 'content-type': 'application/json' }, '{"__proto__":{"roles":["admin"]},"username":"eve","password":"correct horse battery"}', 400, 'INVALID_JSON'],
    ['oversized', { 'content-type': 'application/json' }, JSON.stringify({ username: 'big', password: 'x'.repeat(20_000) }), 413, 'PAYLOAD_TOO_LARGE']
  ]
  for (const [name, headers, payload, status, code] of cases) {
    const res = await app.inject({ method: 'POST', url: '/api/auth/register', headers, payload })
    t.equal(res.statusCode, status, name)
    t.equal(res.json().code, code, name)
    t.equal(res.json().statusCode, status, name)
    t.notMatch(res.body, /\bat \S+\.(ts|js):\d+/, `${name}: no stack trace`)
  }
})

t.test('a username shaped like a user id (a UUID, any case) is refused: 400 INVALID_USERNAME', async (t) => {
  const app = await buildTestApp(t)
  const victim = (await register(app)).json()
  for (const name of [victim.id, victim.id.toUpperCase(), '00000000-0000-4000-8000-000000000000', 'ＡＢＣＤＥＦ01-2345-6789-abcd-ef0123456789']) {
    const res = await register(app, name)
    t.equal(res.statusCode, 400, name)
    t.same(res.json(), { statusCode: 400, code: 'INVALID_USERNAME', message: 'username must not look like a user id' }, name)
  }
  t.equal((await register(app, `${victim.id}x`)).statusCode, 201, 'only the exact id shape is refused')
})

t.test('uniqueness is by NFKC and full Unicode case folding: the same 409 as a taken name', async (t) => {
  const app = await buildTestApp(t)
  const taken = { statusCode: 409, code: 'USERNAME_TAKEN', message: 'This username is not available' }
  t.equal((await register(app, 'ΚΟΣΜΟΣ')).statusCode, 201)
  for (const name of ['κοσμοσ', 'κοσμος', 'Κοσμος']) t.same((await register(app, name)).json(), taken, name)
  t.equal((await register(app, 'Straße')).statusCode, 201)
  for (const name of ['STRASSE', 'strasse', 'STRAẞE']) t.same((await register(app, name)).json(), taken, name)
})

t.test('a confusable of an existing username (UTS #39 skeleton) answers like a taken name', async (t) => {
  const app = await buildTestApp(t)
  const taken = { statusCode: 409, code: 'USERNAME_TAKEN', message: 'This username is not available' }
  t.equal((await register(app, 'root')).statusCode, 201)
  t.same((await register(app, 'r00t')).json(), taken, 'digit zeros for o')
  t.equal((await register(app, 'cop')).statusCode, 201)
  t.same((await register(app, 'сор')).json(), taken, 'all-Cyrillic сор looks like Latin cop')
  t.equal((await register(app, 'example')).statusCode, 201)
  t.same((await register(app, 'EXARNPLE')).json(), taken, 'rn looks like m')
  t.equal((await register(app, 'сорка')).statusCode, 201, 'a Cyrillic name that resembles no existing one is fine')
})

t.test('a username mixing scripts is refused whether or not a lookalike exists', async (t) => {
  const app = await buildTestApp(t)
  const mixed = { statusCode: 400, code: 'INVALID_USERNAME', message: 'username must be written in one script (digits and . _ - @ + go with any)' }
  // Latin r and t around Cyrillic о о.
  t.same((await register(app, 'r\u043e\u043et')).json(), mixed, 'no root yet')
  t.equal((await register(app, 'root')).statusCode, 201)
  t.same((await register(app, 'r\u043e\u043et')).json(), mixed, 'root exists: the same answer')
  t.same((await register(app, 'pαypal')).json(), mixed, 'Greek alpha among Latin')
  t.same((await register(app, '١٢٣abc')).json(), mixed, 'Arabic-Indic digits belong to Arabic, not to Latin')
  for (const name of ['user_1.test@example.com', 'Zoë-2', 'Ἀθηνᾶ', 'Владимир', '山田太郎', 'やまだ山田', '홍길동', 'علي١٢٣']) {
    t.equal((await register(app, name)).statusCode, 201, name)
  }
})
