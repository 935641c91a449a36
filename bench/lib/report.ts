/**
 * The benchmark's results: the scenario rows, the targets of the performance issue evaluated
 * against same-run baselines, and their renderings (Markdown table, console lines).
 */

export interface Row {
  id: string
  label: string
  /** 'baseline' rows are the references; 'service' rows are the auth service; 'consumer' is the verifier app. */
  kind: 'baseline' | 'service' | 'consumer'
  /** Correct answers per second (for loops: operations per second). */
  rps: number
  p50: number | null
  p99: number | null
  statuses: Record<string, number>
  /** The status of a correct answer (0 for loops, which have none). */
  expect: number
  unexpected: number
  errors: number
  /** The server's CPU time (user + system) per answer, in milliseconds; null for loops. */
  cpuMsPerReq: number | null
  /** Peak resident memory of the process under load, in MB. */
  rssMb: number | null
  /** What this row is compared with, and how it is read. */
  baseline?: { id: string, label: string, rps: number, p99: number | null }
  note?: string
}

export interface Target {
  name: string
  /** What was measured, as a short phrase with the figures. */
  measured: string
  ratio: number | null
  threshold: string
  met: boolean
  /** With more than one round: the ratio in each round (the one above is that of the medians). */
  rounds?: (number | null)[]
}

export interface Report {
  meta: Record<string, unknown>
  settings: Record<string, unknown>
  rows: Row[]
  composite: { hello: number, rawVerify: number, rawVerifyBy: string, joseVerify: number, me: number, consumer: number }
  boots: { label: string, readyMs: number, firstBoot: boolean }[]
  targets: Target[]
  /** With more than one round: every round's own rows. */
  rounds?: Row[][]
}

/**
 * A target's ratio with two decimals, or as many more (up to four) as it takes not to read as
 * the threshold itself (0.897 against >= 0.9 printed as 0.90 and marked not met).
 */
const ratioOf = (t: Target): string => {
  const limit = Number(/[\d.]+/.exec(t.threshold)?.[0])
  let digits = 2
  while (t.ratio !== null && t.ratio !== limit && digits < 4 && Math.round(t.ratio * 10 ** digits) / 10 ** digits === limit) digits++
  return fmt(t.ratio, digits)
}

const fmt = (n: number | null | undefined, digits = 0): string =>
  n === null || n === undefined || !Number.isFinite(n) ? '–' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

const ms = (n: number | null): string => n === null ? '–' : n < 10 ? fmt(n, 2) : n < 100 ? fmt(n, 1) : fmt(n, 0)

const perRound = (t: Target): string => (t.rounds ?? []).map((r) => fmt(r, 2)).join(' · ')

function failures (row: Row): string {
  const parts = Object.entries(row.statuses).filter(([status, count]) => status !== String(row.expect) && count > 0).map(([s, c]) => `${c}×${s}`)
  if (row.errors > 0) parts.push(`${row.errors} errors`)
  return parts.length === 0 ? '0' : parts.join(', ')
}

export function evaluateTargets (rows: Row[], composite: Report['composite'], boots: Report['boots'], rssLimitMb: number, readyLimitMs: number): Target[] {
  const get = (id: string): Row | undefined => rows.find((r) => r.id === id)
  const targets: Target[] = []
  const ratioTarget = (name: string, a: Row | undefined, b: { rps: number, label: string } | undefined, min: number): void => {
    if (a === undefined || b === undefined || b.rps <= 0) return
    const ratio = a.rps / b.rps
    targets.push({
      name,
      measured: `${fmt(a.rps)} vs ${fmt(b.rps)} req/s (${b.label})`,
      ratio,
      threshold: `≥ ${min}`,
      met: ratio >= min
    })
  }

  const login = get('login')
  const argon2 = get('argon2-verify')
  ratioTarget('login ≥ 0.9 × raw argon2id verify ceiling', login, argon2, 0.9)

  /** Refresh in both modes against a minimal refresh server: throughput and p99. */
  const refreshTargets = (prefix: string, idOf: (mode: string) => string, minimalId: string, minimalName: string): void => {
    for (const mode of ['cookie', 'body']) {
      const refresh = get(idOf(mode))
      const minimal = get(minimalId)
      ratioTarget(`${prefix}refresh (${mode} mode) ≥ 0.7 × ${minimalName}`, refresh, minimal, 0.7)
      if (refresh?.p99 != null && minimal?.p99 != null && minimal.p99 > 0) {
        const ratio = refresh.p99 / minimal.p99
        targets.push({
          name: `${prefix}refresh (${mode} mode) p99 ≤ 1.5 × ${minimalName}'s p99`,
          measured: `p99 ${ms(refresh.p99)} ms vs ${ms(minimal.p99)} ms`,
          ratio,
          threshold: '≤ 1.5',
          met: ratio <= 1.5
        })
      }
    }
  }
  refreshTargets('', (mode) => `refresh-${mode}-1k`, 'minimal-refresh-1k', 'minimal refresh server')

  const me = get('me-1k')
  if (me !== undefined && composite.me > 0) {
    ratioTarget('/me ≥ 0.8 × composite ceiling 1/(1/hello + 1/verify)', me, { rps: composite.me, label: 'composite' }, 0.8)
  }
  const meUncached = get('me-uncached')
  if (meUncached !== undefined && composite.me > 0) {
    ratioTarget('/me, a signature each request, ≥ 0.8 × composite ceiling', meUncached, { rps: composite.me, label: 'composite' }, 0.8)
  }

  // PostgreSQL: the same targets, each against its baseline on the same PostgreSQL (refresh)
  // or the same ceiling as on SQLite (login, /me). Two instances against one is a ratio in the
  // table, with no threshold.
  refreshTargets('PostgreSQL: ', (mode) => `pg-refresh-${mode}`, 'pg-minimal-refresh', 'minimal PostgreSQL refresh server')
  ratioTarget('PostgreSQL: login ≥ 0.9 × raw argon2id verify ceiling', get('pg-login'), argon2, 0.9)
  const pgMe = get('pg-me')
  if (pgMe !== undefined && composite.me > 0) {
    ratioTarget('PostgreSQL: /me ≥ 0.8 × composite ceiling 1/(1/hello + 1/verify)', pgMe, { rps: composite.me, label: 'composite' }, 0.8)
  }
  for (const id of ['me-1k', 'me-1m', 'me-uncached']) {
    const row = get(id)
    if (row?.p99 != null) {
      targets.push({ name: `${row.label}: p99 < 50 ms`, measured: `p99 ${ms(row.p99)} ms`, ratio: null, threshold: '< 50 ms', met: row.p99 < 50 })
    }
  }

  for (const [big, small] of [['refresh-cookie-1m', 'refresh-cookie-1k'], ['refresh-body-1m', 'refresh-body-1k'], ['me-1m', 'me-1k']] as const) {
    const b = get(big)
    const s = get(small)
    if (b !== undefined && s !== undefined) ratioTarget(`${b.label} ≥ 0.9 × the same at 1k sessions`, b, { rps: s.rps, label: s.label }, 0.9)
  }

  const service = rows.filter((r) => r.kind === 'service' && r.rssMb !== null)
  if (service.length > 0) {
    const worst = service.reduce((a, b) => ((a.rssMb ?? 0) >= (b.rssMb ?? 0) ? a : b))
    targets.push({
      name: `server RSS < ${rssLimitMb} MB in every scenario`,
      measured: `peak ${fmt(worst.rssMb, 0)} MB (${worst.label})`,
      ratio: null,
      threshold: `< ${rssLimitMb} MB`,
      met: service.every((r) => (r.rssMb ?? 0) < rssLimitMb)
    })
  }

  const warm = boots.filter((b) => !b.firstBoot)
  if (warm.length > 0) {
    const sorted = warm.map((b) => b.readyMs).sort((a, b) => a - b)
    const worst = sorted[sorted.length - 1]!
    const median = sorted[Math.floor(sorted.length / 2)]!
    targets.push({
      name: 'start to ready on an existing database < 1 s',
      measured: `worst ${fmt(worst)} ms, median ${fmt(median)} ms over ${warm.length} starts`,
      ratio: null,
      threshold: `< ${readyLimitMs} ms`,
      met: worst < readyLimitMs
    })
  }
  return targets
}

/** One pass over every scenario: its rows, its starts and its composite ceilings. */
export interface Round { rows: Row[], boots: Report['boots'], composite: Report['composite'] }

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}
const medianOrNull = (values: (number | null)[]): number | null => {
  const known = values.filter((v): v is number => v !== null)
  return known.length === 0 ? null : median(known)
}

/** The composite ceilings from a set of rows (hello-world and the raw verification loops). */
export function compositeOf (rows: Row[]): Report['composite'] {
  const rps = (id: string): number => rows.find((r) => r.id === id)?.rps ?? 0
  const hello = rps('hello')
  const fastJwt = rps('verify-fast-jwt')
  const node = rps('verify-node')
  const jose = rps('verify-jose')
  // The /me ceiling takes the fastest raw verification measured, not the one that makes the
  // service look best.
  const rawVerify = Math.max(fastJwt, node)
  return {
    hello,
    rawVerify,
    rawVerifyBy: node >= fastJwt ? 'node:crypto' : 'fast-jwt',
    joseVerify: jose,
    me: hello > 0 && rawVerify > 0 ? 1 / (1 / hello + 1 / rawVerify) : 0,
    consumer: hello > 0 && jose > 0 ? 1 / (1 / hello + 1 / jose) : 0
  }
}

/**
 * One row per scenario from the rounds: the median of req/s, p50, p99 and CPU per answer, the
 * highest peak RSS, the failures added up. Baselines are then read from the aggregated rows, so
 * every ratio printed is one of medians.
 */
export function aggregate (rounds: Round[]): { rows: Row[], composite: Report['composite'] } {
  const ids = [...new Set(rounds.flatMap((r) => r.rows.map((row) => row.id)))]
  const rows = ids.map((id): Row => {
    const all = rounds.map((r) => r.rows.find((row) => row.id === id)).filter((row): row is Row => row !== undefined)
    const first = all[0]!
    const statuses: Record<string, number> = {}
    for (const row of all) for (const [status, count] of Object.entries(row.statuses)) statuses[status] = (statuses[status] ?? 0) + count
    const rss = all.map((row) => row.rssMb).filter((v): v is number => v !== null)
    return {
      ...first,
      rps: median(all.map((row) => row.rps)),
      p50: medianOrNull(all.map((row) => row.p50)),
      p99: medianOrNull(all.map((row) => row.p99)),
      cpuMsPerReq: medianOrNull(all.map((row) => row.cpuMsPerReq)),
      rssMb: rss.length === 0 ? null : Math.max(...rss),
      statuses,
      unexpected: all.reduce((sum, row) => sum + row.unexpected, 0),
      errors: all.reduce((sum, row) => sum + row.errors, 0),
      ...(first.baseline === undefined ? {} : { baseline: { ...first.baseline } })
    }
  })
  const composite = compositeOf(rows)
  for (const row of rows) {
    const base = row.baseline
    if (base === undefined) continue
    if (base.id === 'composite') base.rps = composite.me
    else if (base.id === 'composite-jose') base.rps = composite.consumer
    else {
      const ref = rows.find((r) => r.id === base.id)
      if (ref !== undefined) { base.rps = ref.rps; base.p99 = ref.p99 }
    }
  }
  return { rows, composite }
}

/** Sets each ratio target's ratio in every round (`rounds`), beside the one of the medians. */
export function roundRatios (targets: Target[], rounds: Round[], rssLimitMb: number, readyLimitMs: number): void {
  const perRound = rounds.map((r) => evaluateTargets(r.rows, r.composite, r.boots, rssLimitMb, readyLimitMs))
  for (const t of targets) {
    if (t.ratio === null) continue
    t.rounds = perRound.map((ts) => ts.find((x) => x.name === t.name)?.ratio ?? null)
  }
}

export function markdown (report: Report): string {
  const { meta, rows, composite, targets } = report
  const lines: string[] = []
  const rounds = Number(meta.rounds ?? 1)
  lines.push(`Run ${String(meta.date)} on ${String(meta.cpu)} (${String(meta.cores)} cores), Node ${String(meta.node)}, commit ${String(meta.commit)}; ` +
    `${String(meta.connections)} connections, ${String(meta.duration)} s per scenario after ${String(meta.warmup)} s of warm-up` +
    `${rounds > 1 ? `, ${rounds} rounds (every figure is the median over the rounds; peak RSS is the highest)` : ''}; ` +
    `load average before the run ${String(meta.loadBefore)}.`)
  lines.push('')
  lines.push(`Settings: ${Object.entries(report.settings).map(([k, v]) => `${k}=${String(v)}`).join(', ')}.`)
  lines.push('')
  if (meta.postgres !== undefined) {
    lines.push(`PostgreSQL scenarios: ${String(meta.postgres)}.`)
    lines.push('')
  }
  lines.push('| scenario | req/s | p50 ms | p99 ms | non-2xx / errors | server CPU ms/req | peak RSS MB | compared with | ratio |')
  lines.push('|---|--:|--:|--:|--:|--:|--:|---|--:|')
  for (const row of rows) {
    const base = row.baseline
    lines.push(`| ${row.label}${row.note === undefined ? '' : ` (${row.note})`} | ${fmt(row.rps)} | ${ms(row.p50)} | ${ms(row.p99)} | ${failures(row)} | ${fmt(row.cpuMsPerReq, 3)} | ${fmt(row.rssMb)} | ` +
      `${base === undefined ? '' : `${base.label} (${fmt(base.rps)}/s)`} | ${base === undefined || base.rps <= 0 ? '' : fmt(row.rps / base.rps, 2)} |`)
  }
  lines.push('')
  lines.push(`Composite ceilings: /me = 1 / (1/${fmt(composite.hello)} + 1/${fmt(composite.rawVerify)}) = ${fmt(composite.me)} req/s (hello-world, the fastest raw ES256 verify: ${composite.rawVerifyBy}); ` +
    `consumer = 1 / (1/${fmt(composite.hello)} + 1/${fmt(composite.joseVerify)}) = ${fmt(composite.consumer)} req/s (hello-world, jose ES256 verify).`)
  lines.push('')
  const withRounds = targets.some((t) => t.rounds !== undefined)
  lines.push(`| target | measured | ratio |${withRounds ? ' per round |' : ''} threshold | |`)
  lines.push(`|---|---|--:|${withRounds ? '---|' : ''}---|---|`)
  for (const t of targets) {
    lines.push(`| ${t.name} | ${t.measured} | ${t.ratio === null ? '' : ratioOf(t)} |${withRounds ? ` ${perRound(t)} |` : ''} ${t.threshold} | ${t.met ? 'met' : '**not met**'} |`)
  }
  return lines.join('\n') + '\n'
}

export function targetLines (targets: Target[]): string[] {
  return targets.map((t) => `${t.met ? 'MET    ' : 'NOT MET'}  ${t.name}: ${t.measured}${t.ratio === null ? '' : `, ratio ${ratioOf(t)}`}` +
    `${t.rounds === undefined ? '' : ` (rounds: ${perRound(t)})`} (${t.threshold})`)
}
