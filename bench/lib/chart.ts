/**
 * One chart, as SVG written by hand: for every scenario that has a baseline, a bar for its
 * throughput as a fraction of that baseline, with the target marked where the issue sets one.
 */
import type { Row } from './report.js'

/** The target ratio per row id (the targets); rows not listed are shown without one. */
export const CHART_TARGETS: Record<string, number> = {
  login: 0.9,
  'refresh-cookie-1k': 0.7,
  'refresh-body-1k': 0.7,
  'me-1k': 0.8,
  'me-uncached': 0.8,
  'refresh-cookie-1m': 0.9,
  'refresh-body-1m': 0.9,
  'me-1m': 0.9
}

const escape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
const num = (n: number): string => n.toLocaleString('en-US', { maximumFractionDigits: 0 })

export function chart (rows: Row[], title: string): string {
  const bars = rows.filter((r) => r.baseline !== undefined && r.baseline.rps > 0)
  const labelWidth = 330
  const barWidth = 420
  const valueWidth = 430
  const rowHeight = 30
  const top = 58
  const width = labelWidth + barWidth + valueWidth
  const height = top + bars.length * rowHeight + 44
  const maxRatio = Math.max(1.2, ...bars.map((r) => r.rps / r.baseline!.rps))
  const x = (ratio: number): number => labelWidth + (Math.min(ratio, maxRatio) / maxRatio) * barWidth

  const out: string[] = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="13">`)
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`)
  out.push(`<text x="12" y="24" font-size="16" font-weight="600">${escape(title)}</text>`)
  out.push(`<text x="12" y="44" fill="#555">Throughput as a fraction of the same-run baseline (1.0 = the baseline); black tick = target.</text>`)
  for (const tick of [0, 0.25, 0.5, 0.75, 1, ...(maxRatio > 1.25 ? [Math.floor(maxRatio * 4) / 4] : [])]) {
    const tx = x(tick)
    out.push(`<line x1="${tx}" y1="${top - 6}" x2="${tx}" y2="${top + bars.length * rowHeight}" stroke="${tick === 1 ? '#888' : '#e3e3e3'}" stroke-dasharray="${tick === 1 ? '4 3' : ''}"/>`)
    out.push(`<text x="${tx}" y="${top + bars.length * rowHeight + 16}" text-anchor="middle" fill="#555">${tick.toFixed(2)}</text>`)
  }
  bars.forEach((row, i) => {
    const y = top + i * rowHeight
    const ratio = row.rps / row.baseline!.rps
    const target = CHART_TARGETS[row.id]
    const color = target === undefined ? '#8aa4c8' : ratio >= target ? '#3c9d5d' : '#d0583f'
    out.push(`<text x="${labelWidth - 10}" y="${y + 19}" text-anchor="end">${escape(row.label)}</text>`)
    out.push(`<rect x="${labelWidth}" y="${y + 6}" width="${Math.max(1, x(ratio) - labelWidth)}" height="${rowHeight - 12}" fill="${color}"/>`)
    if (target !== undefined) {
      out.push(`<line x1="${x(target)}" y1="${y + 2}" x2="${x(target)}" y2="${y + rowHeight - 2}" stroke="#000" stroke-width="2"/>`)
    }
    out.push(`<text x="${labelWidth + barWidth + 10}" y="${y + 19}">${ratio.toFixed(2)}  (${num(row.rps)} / ${num(row.baseline!.rps)} req/s, ${escape(row.baseline!.label)})</text>`)
  })
  out.push(`<text x="12" y="${height - 8}" fill="#777" font-size="11">Green: target met; red: not met; blue: no target (shown for reference).</text>`)
  out.push('</svg>')
  return out.join('\n') + '\n'
}
