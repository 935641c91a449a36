/**
 * The last step of `npm run build`: the files the service reads at run time that tsc does not
 * emit (the SQL migrations, the demo's HTML, CSS and icon) are mirrored into dist/. A file is
 * written only when its content differs, so a build with nothing changed touches nothing; a file
 * deleted from the sources is deleted from dist/ too, so dist/ never holds a migration the
 * sources no longer have. Paths are relative to the working directory (npm runs scripts from the
 * project root).
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'

const MIRRORS = [
  ['db/migrations', 'dist/db/migrations'],
  ['db/migrations-pg', 'dist/db/migrations-pg'],
  ['src/demo', 'dist/src/demo']
]

/** Makes `to` hold exactly the files of `from`, with their content. */
function mirror (from, to) {
  if (existsSync(to) && !statSync(to).isDirectory()) rmSync(to)
  mkdirSync(to, { recursive: true })
  const names = new Set(readdirSync(from))
  for (const name of readdirSync(to)) {
    if (!names.has(name)) rmSync(join(to, name), { recursive: true, force: true })
  }
  for (const name of names) {
    const source = join(from, name)
    const target = join(to, name)
    if (statSync(source).isDirectory()) {
      mirror(source, target)
      continue
    }
    if (existsSync(target)) {
      if (statSync(target).isFile() && readFileSync(target).equals(readFileSync(source))) continue
      rmSync(target, { recursive: true, force: true })
    }
    copyFileSync(source, target)
  }
}

for (const [from, to] of MIRRORS) mirror(from, to)
