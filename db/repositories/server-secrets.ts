import { randomBytes } from 'node:crypto'
import { eq } from 'drizzle-orm'
import type { Db } from '../client.js'
import { serverSecrets } from '../schema.js'

export function createServerSecretsRepository (db: Db) {
  return {
    /**
     * Returns the named secret, creating it from the CSPRNG on first use. INSERT OR IGNORE
     * then SELECT: when two processes start at once, both end up with the same value.
     */
    async getOrCreate (name: string, bytes = 32): Promise<Buffer> {
      db.insert(serverSecrets).values({ name, value: randomBytes(bytes), createdAt: new Date() }).onConflictDoNothing().run()
      return db.select().from(serverSecrets).where(eq(serverSecrets.name, name)).get()!.value
    }
  }
}

export type ServerSecretsRepository = ReturnType<typeof createServerSecretsRepository>
