/**
 * Preloaded into a server process by group-commit.test.ts: every fdatasync after the first
 * FAIL_FSYNC_AFTER ones fails with EIO, as on a disk that has started to fail. Not a test file.
 */
import fs from 'node:fs'

const after = Number(process.env.FAIL_FSYNC_AFTER ?? 0)
const real = fs.fdatasync
let calls = 0
fs.fdatasync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
  if (++calls <= after) { real(fd, cb); return }
  process.nextTick(cb, Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5, syscall: 'fdatasync' }))
}) as typeof fs.fdatasync
