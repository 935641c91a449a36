/**
 * Refuses to run on a Node.js older than `engines.node` with one line, instead of the bare
 * `Segmentation fault` that better-sqlite3's native binary (N-API 10) gives on Node 20.
 * Imported first by every entry point (the server, the CLIs, the migrator): ES module imports
 * are evaluated in order, so this runs before any module that loads a native binary.
 * `npm start`, `npm test` and `npm run ...` never meet it: they run the Node 24 that the
 * `node` dev dependency puts first on PATH (README, "Quick start").
 */
const MINIMUM_MAJOR = 22

const found = process.versions.node
if (Number(found.split('.')[0]) < MINIMUM_MAJOR) {
  process.stderr.write(`auth-service: Node ≥ ${MINIMUM_MAJOR} required, found ${found} (${process.execPath}); run it through npm (npm start, npm run keys, ...) or use Node ${MINIMUM_MAJOR}+ (see .nvmrc)\n`)
  process.exit(1)
}

export {}
