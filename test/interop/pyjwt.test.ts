/**
 * Python's PyJWT (Debian's python3-jwt, PyJWKClient) verifies the service's tokens against a
 * really listening service, and refuses the forged ones. Python runs as a child process spawned
 * asynchronously: the event loop stays free, so the server in this process can answer its JWKS
 * request. Skipped with a message when python3-jwt is missing, except in CI (CI=true), where it
 * must run.
 */
import { execFile, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ASYMMETRIC, envFor, forgeries, serviceKey, session } from '../keys/support.js'
import { AUDIENCE, ISSUER, startService } from './support.js'

const PYTHON = '/usr/bin/python3'
const SCRIPT = join(import.meta.dirname, 'pyjwt_verify.py')

interface PyResult { ok: boolean, error?: string, kid?: string, alg?: string, claims?: Record<string, unknown> }

async function pyjwtAvailable (): Promise<string | null> {
  return await new Promise((resolve) => {
    execFile(PYTHON, ['-c', 'import jwt, cryptography; print(jwt.__version__)'], { timeout: 10_000 }, (err, stdout) => {
      resolve(err === null ? stdout.trim() : null)
    })
  })
}

async function runPython (cases: Array<{ jwksUrl: string, issuer: string, audience: string, token: string }>): Promise<{ pyjwt: string, results: PyResult[] }> {
  const child = spawn(PYTHON, [SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] })
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  let out = ''
  let err = ''
  child.stdout.on('data', (c) => { out += String(c) })
  child.stderr.on('data', (c) => { err += String(c) })
  child.stdin.end(JSON.stringify(cases))
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  clearTimeout(timer)
  if (code !== 0) throw new Error(`python exited with ${String(code)}: ${err}`)
  return JSON.parse(out)
}

const version = await pyjwtAvailable()
const skip = version === null && process.env.CI !== 'true'
  ? `${PYTHON} cannot import jwt (Debian's python3-jwt): apt-get install python3-jwt; CI installs it and runs this test`
  : false

t.test('PyJWT verifies the service\'s tokens and refuses forged ones', { skip }, async (t) => {
  if (version === null) throw new Error('python3-jwt is required in CI (.ci/run installs it with apt)')
  t.comment(`PyJWT ${version}`)

  const cases: Array<{ jwksUrl: string, issuer: string, audience: string, token: string }> = []
  const expected: Array<{ name: string, ok: boolean, kid?: string, alg?: string, sub?: unknown }> = []
  for (const alg of ASYMMETRIC) {
    const service = await startService(t, envFor(alg))
    const genuine = await session(service.app)
    const base = { jwksUrl: service.jwksUrl, issuer: ISSUER, audience: AUDIENCE }
    cases.push({ ...base, token: genuine.token })
    expected.push({ name: `${alg}: the genuine token`, ok: true, kid: String(genuine.header.kid), alg, sub: genuine.payload.sub })
    for (const f of forgeries(genuine, serviceKey(service.app))) {
      cases.push({ ...base, token: f.token })
      expected.push({ name: `${alg}: ${f.name}`, ok: false })
    }
  }

  const { results } = await runPython(cases)
  t.equal(results.length, expected.length)
  results.forEach((r, i) => {
    const e = expected[i]!
    if (e.ok) {
      t.ok(r.ok, `${e.name} verifies in PyJWT ${r.error ?? ''}`)
      t.equal(r.kid, e.kid)
      t.equal(r.alg, e.alg)
      t.equal(r.claims?.sub, e.sub)
    } else {
      t.notOk(r.ok, `${e.name} is refused by PyJWT (${r.error ?? 'accepted!'})`)
    }
  })
})

/** The Python example of docs/consuming-services.md ("In any other language"), as a reader copies it. */
function documentedExample (): string {
  const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'consuming-services.md'), 'utf8')
  const match = /```python\n(import jwt\n[\s\S]*?)```/.exec(doc)
  if (match === null) throw new Error('no Python example in docs/consuming-services.md')
  return match[1]!
}

// Runs the example, then points its ISSUER, AUDIENCE and JWKS at the test service.
const DRIVER = `
import json, os, sys
ns = {}
exec(os.environ["EXAMPLE"], ns)
ns["ISSUER"], ns["AUDIENCE"] = os.environ["ISSUER"], os.environ["AUDIENCE"]
ns["JWKS"] = ns["PyJWKClient"](os.environ["JWKS_URL"])
out = []
for token in json.load(sys.stdin):
    try:
        out.append({"ok": True, "sub": ns["verify"](token)["sub"]})
    except Exception as error:
        out.append({"ok": False, "error": f"{type(error).__name__}: {error}"})
print(json.dumps(out))
`

t.test('the documented Python example uses only public API and makes the checks its prose lists', { skip }, async (t) => {
  const example = documentedExample()
  t.notMatch(example, /\._[a-z]/, 'no private attribute (such as key._jwk_data)')
  for (const alg of ASYMMETRIC) {
    const service = await startService(t, envFor(alg))
    const genuine = await session(service.app)
    const forged = forgeries(genuine, serviceKey(service.app))
    const child = spawn(PYTHON, ['-c', DRIVER], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { EXAMPLE: example, ISSUER, AUDIENCE, JWKS_URL: service.jwksUrl }
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    let out = ''
    let err = ''
    child.stdout.on('data', (c) => { out += String(c) })
    child.stderr.on('data', (c) => { err += String(c) })
    child.stdin.end(JSON.stringify([genuine.token, ...forged.map((f) => f.token)]))
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
    clearTimeout(timer)
    t.equal(code, 0, err)
    const [first, ...rest] = JSON.parse(out) as Array<{ ok: boolean, sub?: string, error?: string }>
    t.same(first, { ok: true, sub: genuine.payload.sub }, `${alg}: the genuine token verifies`)
    rest.forEach((r, i) => { t.notOk(r.ok, `${alg}: ${forged[i]!.name} is refused (${r.error ?? 'accepted!'})`) })
  }
})
