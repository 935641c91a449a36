// What the smoke checks run against a deployed service share (.ci/docker-smoke.mjs,
// scripts/compose-scale-check.mjs): one line per check, exit 1 at the first failure, and a
// JSON call to the service as a client makes it.

/** Prints `ok   what`; or `FAIL what: detail` on stderr and exits 1. */
export function check (ok, what, detail = '') {
  if (!ok) {
    console.error(`  FAIL ${what}${detail ? `: ${detail}` : ''}`)
    process.exit(1)
  }
  console.log(`  ok   ${what}`)
}

/**
 * `call(method, path, body?, headers?)` against `base`: a JSON body when one is given, each call
 * bounded by `timeoutMs`. Answers the status, the headers, the balancer's `x-served-by` ('?'
 * without one), the body as text and, when it is JSON, parsed (else null).
 */
export function client (base, { timeoutMs = 15_000 } = {}) {
  return async function call (method, path, body, headers = {}) {
    const res = await fetch(base + path, {
      method,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs)
    })
    const text = await res.text()
    let json = null
    try { json = JSON.parse(text) } catch {}
    return { status: res.status, headers: res.headers, servedBy: res.headers.get('x-served-by') ?? '?', json, text }
  }
}
