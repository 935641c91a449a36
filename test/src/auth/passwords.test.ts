import t from 'tap'
import { checkUsername, createPasswordPolicy, usernameKey } from '../../../src/auth/credentials.js'
import { createPasswordHasher, hashConcurrency, needsRehash } from '../../../src/auth/passwords.js'

t.test('hashes are argon2id PHC strings with the configured parameters, and verify', async (t) => {
  const hasher = await createPasswordHasher({ memoryCost: 2048, timeCost: 2, parallelism: 1 })
  const phc = await hasher.hash('a long enough passphrase')
  t.match(phc, /^\$argon2id\$v=19\$m=2048,t=2,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/)
  t.equal(await hasher.verify(phc, 'a long enough passphrase'), true)
  t.equal(await hasher.verify(phc, 'a long enough passphrasE'), false)
  t.equal(await hasher.verify('not a hash', 'x'), false, 'a corrupt stored hash fails closed, without throwing')
  t.equal(await hasher.verifyDummy('anything at all'), false)
})

t.test('at most `concurrency` hashes run at once; the rest wait in order and all finish', async (t) => {
  const hasher = await createPasswordHasher({ memoryCost: 2048, timeCost: 2, parallelism: 1 }, 2)
  const phc = await hasher.hash('a long enough passphrase')
  let most = 0
  const sample = setInterval(() => { most = Math.max(most, hasher.running) }, 0)
  const results = Promise.all(Array.from({ length: 8 }, async (_, i) => await hasher.verify(phc, i % 2 === 0 ? 'a long enough passphrase' : 'wrong')))
  t.equal(hasher.running, 2, 'two started')
  t.equal(hasher.waiting, 6, 'six wait')
  t.same(await results, [true, false, true, false, true, false, true, false])
  clearInterval(sample)
  t.equal(most, 2, 'never more than two at once')
  t.equal(hasher.running + hasher.waiting, 0)
  t.equal(hashConcurrency(3), 2, 'a pool of 3 runs 2 hashes')
  t.equal(hashConcurrency(1), 1, 'a pool of one still hashes')
})

t.test('needsRehash: weaker parameters or another variant need a new hash', async (t) => {
  const params = { memoryCost: 19456, timeCost: 2, parallelism: 1 }
  t.equal(needsRehash('$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', params), false)
  t.equal(needsRehash('$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA', params), false, 'stronger is kept')
  t.equal(needsRehash('$argon2id$v=19$m=4096,t=2,p=1$c2FsdA$aGFzaA', params), true, 'less memory')
  t.equal(needsRehash('$argon2id$v=19$m=19456,t=1,p=1$c2FsdA$aGFzaA', params), true, 'fewer iterations')
  t.equal(needsRehash('$argon2i$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', params), true, 'argon2i')
  t.equal(needsRehash('$argon2id$v=16$m=19456,t=2,p=1$c2FsdA$aGFzaA', params), true, 'old version')
  t.equal(needsRehash('$2b$12$abcdefghijklmnopqrstuv', params), true, 'another algorithm')
})

t.test('password policy: NFKC, code points, min/max, common list', async (t) => {
  const policy = createPasswordPolicy(12)
  t.same(policy.check('ｆｕｌｌｗｉｄｔｈ ｐａｓｓ'), { ok: true, value: 'fullwidth pass' }, 'NFKC-normalised')
  t.equal(policy.check('🔒'.repeat(12)).ok, true, '12 emoji are 12 characters')
  t.equal(policy.check('🔒'.repeat(11)).ok, false)
  t.equal(policy.check('x'.repeat(257)).ok, false)
  t.equal(policy.check('x'.repeat(256)).ok, true)
})

t.test('usernames: NFKC, trimmed, allowed characters, case-insensitive key', async (t) => {
  t.same(checkUsername('  Ａｌｉｃｅ  '), { ok: true, value: 'Alice' })
  t.equal(usernameKey('Alice'), 'alice')
  t.equal(checkUsername('alice@example.com').ok, true)
  t.equal(checkUsername('al').ok, false)
  t.equal(checkUsername('al ice').ok, false)
  t.equal(checkUsername('alice\u0000').ok, false)
  t.equal(checkUsername('alice\u202e').ok, false, 'no bidi controls')
})
