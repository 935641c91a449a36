import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'

/**
 * A tmpfs mounted with `options` (e.g. `size=8m`, `ro,size=1m`) on a fresh temporary directory,
 * unmounted and removed at teardown. Where the machine cannot mount one (no root, no mount
 * namespace) the test is skipped with the reason and null comes back; under CI=true it fails.
 */
export function tmpfs (t: Test, prefix: string, options: string): string | null {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { stdio: 'pipe' })
  } catch (err) {
    const why = (err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message
    if (process.env.CI === 'true') t.fail(`cannot mount a tmpfs (${options}): ${why}`)
    else t.plan(0, `cannot mount a tmpfs (needs root or a mount namespace): ${why}`)
    return null
  }
  t.teardown(() => { execFileSync('umount', ['-l', dir]) })
  return dir
}
