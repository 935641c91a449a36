/**
 * The demo single-page app at /demo/ (DEMO_ENABLED: on by default outside production, off in
 * production unless set). Plain HTML and CSS from src/demo/, and two ES modules: the client
 * library (packages/client, the package @auth-service/client) and the demo's script (src/client/).
 *
 * After `npm run build` the modules are the compiled JavaScript under dist/. Run from source
 * (`npm run dev`, the tests) there is no compiled JavaScript next to this file, so the
 * TypeScript is transpiled on first request with the project's own compiler: no build step to
 * run by hand either way.
 *
 * The demo's pages carry a strict Content-Security-Policy: scripts and styles from this origin
 * (images also as data: URLs, for the TOTP enrolment's QR code)
 * only, requests only to this origin and DEMO_API_URL, no framing, no form submission (the
 * login form is sent by script; without script a password never leaves the page).
 * @see https://github.com/fastify/fastify-static
 */
import { readFile, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { FastifyPluginAsync, FastifySchema } from 'fastify'

const demoDir = fileURLToPath(new URL('../src/demo/', import.meta.url))
// This file is routes/demo.ts in the sources and dist/routes/demo.js after the build; the
// modules sit at the same places below either root (src/client/tsconfig.json emits both).
const MODULES = {
  'auth-client': fileURLToPath(new URL('../packages/client/src/auth-client', import.meta.url)),
  demo: fileURLToPath(new URL('../src/client/demo', import.meta.url))
} as const

/**
 * The client library imports @simplewebauthn/browser by its package name, which a browser
 * cannot resolve: the package's ES modules (relative imports only) are served below
 * /demo/simplewebauthn/ and the import is pointed there.
 */
const webauthnDir = dirname(fileURLToPath(import.meta.resolve('@simplewebauthn/browser')))
const withBrowserPaths = (code: string): string => code.replaceAll(/(from\s*)(['"])@simplewebauthn\/browser\2/g, '$1$2./simplewebauthn/index.js$2')

/** Kept out of the OpenAPI document: the demo is not part of the API. */
const hidden = { hide: true } as FastifySchema

const transpiled = new Map<string, { mtimeMs: number, code: string }>()

/** The module's JavaScript: compiled by the build, or transpiled from its TypeScript source. */
async function moduleSource (name: keyof typeof MODULES): Promise<string> {
  const compiled = await readFile(`${MODULES[name]}.js`, 'utf8').catch(() => null)
  if (compiled !== null) return compiled
  const path = `${MODULES[name]}.ts`
  const { mtimeMs } = await stat(path)
  const cached = transpiled.get(path)
  if (cached?.mtimeMs === mtimeMs) return cached.code
  const ts = (await import('typescript')).default
  const { outputText } = ts.transpileModule(await readFile(path, 'utf8'), {
    fileName: path,
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ES2022 }
  })
  transpiled.set(path, { mtimeMs, code: outputText })
  return outputText
}

const demo: FastifyPluginAsync = async (app) => {
  const { apiOrigin } = app.config.demo
  const csp = [
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    `connect-src 'self'${apiOrigin === '' ? '' : ` ${apiOrigin}`}`,
    "form-action 'none'", "frame-ancestors 'none'", "base-uri 'none'"
  ].join('; ')

  app.addHook('onSend', async (_request, reply) => {
    reply.header('content-security-policy', csp)
      .header('x-content-type-options', 'nosniff')
      .header('cache-control', 'no-cache')
  })

  app.get('/demo', { schema: hidden }, async (_request, reply) => reply.redirect('/demo/'))

  app.get('/demo/config.json', { schema: hidden }, async () => ({ apiOrigin }))

  for (const name of Object.keys(MODULES) as Array<keyof typeof MODULES>) {
    app.get(`/demo/${name}.js`, { schema: hidden }, async (_request, reply) =>
      reply.type('text/javascript; charset=utf-8').send(withBrowserPaths(await moduleSource(name))))
  }

  await app.register(fastifyStatic, {
    root: webauthnDir,
    prefix: '/demo/simplewebauthn/',
    allowedPath: (path) => path.endsWith('.js'),
    decorateReply: false,
    cacheControl: false
  })

  await app.register(fastifyStatic, {
    root: demoDir,
    prefix: '/demo/',
    wildcard: false,
    decorateReply: false,
    cacheControl: false
  })
}

export default demo
