// The benchmark's arithmetic (bench/lib/report.ts): how rounds become one table and how a
// target's ratio is printed. The benchmark itself is not part of the suite (the machine is
// shared and noisy); its figures are only as honest as this reduction.
import t from 'tap'
import { aggregate, evaluateTargets, markdown, roundRatios, targetLines, type Report, type Round, type Row } from '../bench/lib/report.js'

const row = (id: string, rps: number, p99: number | null, rssMb: number | null, extra: Partial<Row> = {}): Row => ({
  id, label: id, kind: id.startsWith('minimal') || id === 'hello' || id.startsWith('verify') ? 'baseline' : 'service',
  rps, p50: p99 === null ? null : p99 / 2, p99, statuses: { 200: Math.round(rps * 10) }, expect: 200, unexpected: 0, errors: 0,
  cpuMsPerReq: 0.2, rssMb, ...extra
})

/** One round: hello, node:crypto verify, /me against the composite, refresh against the minimal server. */
function round (minimal: number, cookie: number, me: number, rss: number, readyMs: number): Round {
  const rows = [
    row('hello', 50_000, 1, 100),
    row('verify-node', 12_500, null, 100, { expect: 0, statuses: {} }),
    row('verify-fast-jwt', 10_000, null, 100, { expect: 0, statuses: {} }),
    row('verify-jose', 6000, null, 100, { expect: 0, statuses: {} }),
    row('me-1k', me, 6, rss, { baseline: { id: 'composite', label: 'composite ceiling', rps: 1, p99: null } }),
    row('minimal-refresh-1k', minimal, 8, 150),
    row('refresh-cookie-1k', cookie, 12, rss, { baseline: { id: 'minimal-refresh-1k', label: 'minimal refresh server', rps: minimal, p99: 8 } })
  ]
  const composite = { hello: 50_000, rawVerify: 12_500, rawVerifyBy: 'node:crypto', joseVerify: 6000, me: 10_000, consumer: 1 / (1 / 50_000 + 1 / 6000) }
  return { rows, boots: [{ label: 'refresh', readyMs, firstBoot: false }], composite }
}

t.test('rounds: the median of each figure, the highest peak RSS, failures added up', async (t) => {
  // Medians that are not the means: a mean would be pulled by the one fast round.
  const rounds = [round(9000, 6000, 9000, 160, 400), round(12_000, 8000, 11_000, 190, 450), round(9500, 6500, 10_000, 170, 900)]
  rounds[1]!.rows.find((r) => r.id === 'refresh-cookie-1k')!.statuses[500] = 3
  rounds[1]!.rows.find((r) => r.id === 'refresh-cookie-1k')!.unexpected = 3
  const { rows, composite } = aggregate(rounds)
  const refresh = rows.find((r) => r.id === 'refresh-cookie-1k')!
  t.equal(refresh.rps, 6500, 'median req/s')
  t.equal(refresh.rssMb, 190, 'the highest peak, not the median')
  t.equal(refresh.unexpected, 3)
  t.same(refresh.statuses, { 200: 60_000 + 80_000 + 65_000, 500: 3 })
  // The baseline is the aggregated minimal server, not the first round's.
  t.equal(refresh.baseline?.rps, 9500)
  t.equal(composite.me, 1 / (1 / 50_000 + 1 / 12_500), 'composite ceiling from the aggregated rows')
  t.equal(rows.find((r) => r.id === 'me-1k')!.baseline?.rps, composite.me)
  t.equal(composite.rawVerifyBy, 'node:crypto')

  const targets = evaluateTargets(rows, composite, rounds.flatMap((r) => r.boots), 150, 1000)
  roundRatios(targets, rounds, 150, 1000)
  const ratio = targets.find((x) => x.name.startsWith('refresh (cookie mode) ≥'))!
  t.equal(ratio.ratio, 6500 / 9500, 'the ratio of the medians')
  t.same(ratio.rounds, [6000 / 9000, 8000 / 12_000, 6500 / 9500], 'and every round its own')
  t.equal(targets.find((x) => x.name.startsWith('server RSS'))!.met, false, '190 MB in one round is over 150 MB')
  t.equal(targets.find((x) => x.name.startsWith('start to ready'))!.measured, 'worst 900 ms, median 450 ms over 3 starts')

  const report: Report = { meta: { rounds: 3 }, settings: {}, rows, composite, boots: [], targets }
  const md = markdown(report)
  t.match(md, /3 rounds \(every figure is the median over the rounds; peak RSS is the highest\)/)
  t.match(md, /\| refresh \(cookie mode\) ≥ 0\.7 × minimal refresh server \| [^|]+ \| 0\.68 \| 0\.67 · 0\.67 · 0\.68 \|/)
})

t.test('one round: its own figures, no per-round column', async (t) => {
  const only = round(9000, 6300, 9000, 140, 400)
  const { rows } = aggregate([only])
  t.same(rows, only.rows.map((r) => r.id === 'me-1k' ? { ...r, baseline: { ...r.baseline!, rps: 10_000 } } : r))
  const targets = evaluateTargets(rows, only.composite, only.boots, 150, 1000)
  t.notOk(markdown({ meta: {}, settings: {}, rows, composite: only.composite, boots: [], targets }).includes('per round'))
})

t.test('a ratio never prints as its own threshold when it misses it', async (t) => {
  const line = (ratio: number, threshold: string, met: boolean): string => targetLines([{ name: 'x', measured: 'm', ratio, threshold, met }])[0]!
  t.match(line(0.6997, '≥ 0.7', false), /ratio 0\.6997 /)
  t.match(line(0.8987, '≥ 0.9', false), /ratio 0\.899 /)
  t.match(line(0.7712, '≥ 0.7', true), /ratio 0\.77 /)
  t.match(line(1.5, '≤ 1.5', true), /ratio 1\.50 /)
  t.match(line(1.5004, '≤ 1.5', false), /ratio 1\.5004 /)
})

t.test('PostgreSQL: refresh against the minimal PostgreSQL server, /me against the composite, login against argon2id', async (t) => {
  const rows = [
    row('hello', 50_000, 1, 100),
    row('verify-node', 12_500, null, 100, { expect: 0, statuses: {} }),
    row('argon2-verify', 200, 300, 120, { kind: 'baseline' }),
    row('pg-minimal-refresh', 2000, 20, 130, { kind: 'baseline' }),
    row('pg-refresh-cookie', 1500, 28, 150, { baseline: { id: 'pg-minimal-refresh', label: 'minimal PostgreSQL refresh server', rps: 2000, p99: 20 } }),
    row('pg-refresh-body', 1300, 32, 150, { baseline: { id: 'pg-minimal-refresh', label: 'minimal PostgreSQL refresh server', rps: 2000, p99: 20 } }),
    row('pg-me', 8500, 9, 160, { baseline: { id: 'composite', label: 'composite ceiling', rps: 1, p99: null } }),
    row('pg-login', 150, 500, 190, { baseline: { id: 'argon2-verify', label: 'raw argon2id verify', rps: 200, p99: 300 } }),
    row('pg-lb-refresh-1', 1400, 30, 150),
    row('pg-lb-refresh-2', 1600, 35, 150, { baseline: { id: 'pg-lb-refresh-1', label: 'one instance', rps: 1400, p99: 30 } })
  ]
  const { rows: aggregated, composite } = aggregate([{ rows, boots: [], composite: { hello: 0, rawVerify: 0, rawVerifyBy: '', joseVerify: 0, me: 0, consumer: 0 } }])
  const targets = evaluateTargets(aggregated, composite, [], 150, 1000)
  const named = (start: string) => targets.find((x) => x.name.startsWith(start))
  t.equal(named('PostgreSQL: refresh (cookie mode) ≥ 0.7 × minimal PostgreSQL refresh server')?.ratio, 0.75)
  t.equal(named('PostgreSQL: refresh (body mode) ≥ 0.7 × minimal PostgreSQL refresh server')?.ratio, 0.65)
  t.equal(named('PostgreSQL: refresh (body mode) ≥ 0.7')?.met, false)
  t.equal(named('PostgreSQL: refresh (cookie mode) p99 ≤ 1.5')?.ratio, 1.4)
  t.equal(named('PostgreSQL: refresh (body mode) p99 ≤ 1.5')?.met, false, '32 ms against 20 ms is 1.6')
  t.equal(named('PostgreSQL: /me ≥ 0.8 × composite ceiling')?.ratio, 8500 / (1 / (1 / 50_000 + 1 / 12_500)))
  t.equal(named('PostgreSQL: login ≥ 0.9 × raw argon2id verify ceiling')?.ratio, 0.75)
  // The SQLite targets are not made from PostgreSQL rows.
  t.notOk(targets.some((x) => x.name.startsWith('refresh (cookie mode)') || x.name.startsWith('login ≥')))
  // Two instances against one: a ratio in the table, not a target (no threshold is set for it).
  const md = markdown({ meta: { postgres: 'PostgreSQL 15.18, fsync=on, synchronous_commit=on' }, settings: {}, rows: aggregated, composite, boots: [], targets })
  t.match(md, /^PostgreSQL scenarios: PostgreSQL 15\.18, fsync=on, synchronous_commit=on\.$/m, 'the header says what PostgreSQL ran, and how durable')
  t.match(md, /\| pg-lb-refresh-2 \| 1,600 \|[^\n]*\| one instance \(1,400\/s\) \| 1\.14 \|/)
})
