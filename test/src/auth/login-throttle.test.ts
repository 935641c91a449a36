import t from 'tap'
import { createLoginThrottle } from '../../../src/auth/login-throttle.js'

const at = (seconds: number): Date => new Date(Date.UTC(2026, 0, 1) + seconds * 1000)

t.test('attempts are counted when reserved: the (max+1)-th at once is refused before any has settled', async (t) => {
  const throttle = createLoginThrottle({ max: 3, windowSeconds: 60 })
  for (let i = 0; i < 3; i++) t.same(throttle.reserve('k', at(0)), { ok: true })
  t.same(throttle.reserve('k', at(0)), { ok: false, retryAfter: 1 }, 'refused while three are being checked: they settle within moments')
  t.same(throttle.reserve('other', at(0)), { ok: true }, 'other keys are counted apart')
  for (let i = 0; i < 3; i++) throttle.release('k', at(1), 'failed')
  t.same(throttle.reserve('k', at(10)), { ok: false, retryAfter: 50 }, 'three failures: refused until the window ends')
  t.same(throttle.reserve('k', at(60)), { ok: true }, 'a new window')
})

t.test('a right password forgets the failures, not the attempts still being checked', async (t) => {
  const throttle = createLoginThrottle({ max: 3, windowSeconds: 60 })
  throttle.reserve('k', at(0))
  throttle.release('k', at(0), 'failed')
  throttle.reserve('k', at(1)) // still being checked
  throttle.reserve('k', at(1)) // the right one
  throttle.reset('k', at(2))
  t.same(throttle.reserve('k', at(2)), { ok: true })
  t.same(throttle.reserve('k', at(2)), { ok: true })
  t.same(throttle.reserve('k', at(2)), { ok: false, retryAfter: 1 }, 'the one in flight and the two new ones fill the limit')
})

t.test('an attempt whose password was never checked is given back', async (t) => {
  const throttle = createLoginThrottle({ max: 1, windowSeconds: 60 })
  t.same(throttle.reserve('k', at(0)), { ok: true })
  throttle.release('k', at(0), 'unchecked')
  t.same(throttle.reserve('k', at(0)), { ok: true })
})

t.test('bounded: the oldest key is dropped when full', async (t) => {
  const throttle = createLoginThrottle({ max: 1, windowSeconds: 60, maxEntries: 2 })
  for (const key of ['a', 'b', 'c']) { throttle.reserve(key, at(0)); throttle.release(key, at(0), 'failed') }
  t.same(throttle.reserve('a', at(0)), { ok: true }, 'a was dropped')
  t.same(throttle.reserve('c', at(0)), { ok: false, retryAfter: 60 })
})
