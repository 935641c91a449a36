/**
 * Child process for checkpointer.test.ts (not a test file): opens DB_PATH with the background
 * checkpointer and synchronous=FULL, then commits one row at a time and prints each id after its
 * commit returned (what the service would acknowledge), until it is killed.
 */
import { openDatabase } from '../../db/client.js'

// Run by itself (a test runner given the whole folder), there is nothing to do.
if (process.env.DB_PATH === undefined) process.exit(0)

const { sqlite } = openDatabase({ path: process.env.DB_PATH!, synchronous: 'FULL', checkpoint: 'background' })
sqlite.exec('CREATE TABLE IF NOT EXISTS acked (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)')
const insert = sqlite.prepare('INSERT INTO acked (payload) VALUES (randomblob(2000)) RETURNING id')
for (;;) {
  const { id } = insert.get() as { id: number }
  process.stdout.write(`${id}\n`)
  // Yield now and then, so the checkpointer's messages and the kill are handled as in a server.
  if (id % 50 === 0) await new Promise((resolve) => setImmediate(resolve))
}
