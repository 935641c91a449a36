/**
 * Every relative link and anchor in README.md, docs/ and the packages' READMEs resolves: the file
 * exists, and `#anchor` names a heading of the target (GitHub's slugs). Links in code are ignored.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import t from 'tap'
import { ROOT } from './support/process.js'

function markdownFiles (): string[] {
  const files = [join(ROOT, 'README.md'), join(ROOT, 'packages', 'verifier', 'README.md'), join(ROOT, 'packages', 'client', 'README.md')]
  for (const f of readdirSync(join(ROOT, 'docs'), { recursive: true, encoding: 'utf8' })) {
    if (f.endsWith('.md')) files.push(join(ROOT, 'docs', f))
  }
  return files
}

/** The text outside fenced code blocks and inline code. */
function prose (markdown: string): string {
  return markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').replace(/`[^`\n]*`/g, '')
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchorsOf (markdown: string): Set<string> {
  const seen = new Map<string, number>()
  const anchors = new Set<string>()
  const withoutCode = markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '')
  for (const [, heading] of withoutCode.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const text = heading!.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/[`*]/g, '')
    const base = text.toLowerCase().replace(/[^\p{L}\p{N}\p{M}\s_-]/gu, '').replace(/ /g, '-')
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    anchors.add(n === 0 ? base : `${base}-${n}`)
  }
  return anchors
}

for (const file of markdownFiles()) {
  t.test(relative(ROOT, file), async (t) => {
    const text = readFileSync(file, 'utf8')
    const links = [...prose(text).matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1]!)
      .filter((l) => !/^[a-z][a-z0-9+.-]*:/i.test(l))
    if (file.endsWith(join(ROOT, 'README.md')) && dirname(file) === ROOT) t.ok(links.length >= 10, `the README's links are found (${links.length})`)
    for (const link of links) {
      const [path, anchor] = link.split('#') as [string, string | undefined]
      const target = path === '' ? file : join(dirname(file), decodeURIComponent(path))
      if (!existsSync(target)) {
        t.fail(`${link}: ${relative(ROOT, target)} does not exist`)
        continue
      }
      if (anchor === undefined || anchor === '') { t.pass(link); continue }
      if (statSync(target).isDirectory() || !target.endsWith('.md')) { t.fail(`${link}: an anchor into a file that is not Markdown`); continue }
      t.ok(anchorsOf(readFileSync(target, 'utf8')).has(anchor), `${link}: #${anchor} is a heading of ${relative(ROOT, target)}`)
    }
  })
}

t.test('the anchors are GitHub\'s', async (t) => {
  const anchors = anchorsOf('# Signing keys: the key ring, rotation and key protection\n## CSRF defence\n## `/me` and **more**\n## CSRF defence\n```\n# not a heading\n```\n')
  t.same([...anchors], ['signing-keys-the-key-ring-rotation-and-key-protection', 'csrf-defence', 'me-and-more', 'csrf-defence-1'])
})
