/**
 * Server secrets at rest (`server_secrets`: the refresh-token derivation key). A copy of the
 * database plus any spent refresh token would let whoever holds the derivation key compute the
 * session's current token offline, so with KEY_ENCRYPTION_KEY set the secret is sealed exactly
 * as the private signing keys are (AES-256-GCM, see `seal`; the associated data names the
 * secret), and a secret stored in clear before the key was set is sealed in place at start, in
 * the same transaction that reads it. The stored value is the raw secret (clear) or the bytes
 * of the `enc:v1:` string (sealed).
 */
import { randomBytes } from 'node:crypto'
import type { ServerSecretsRepository } from '../../db/repositories/server-secrets.js'
import { isSealed, KeyProtectionError, openSealed, seal } from './signing-key.js'

/** A clear secret is exactly `bytes` long; a sealed one is the longer `enc:v1:...` text. */
function storedSealed (stored: Buffer, bytes: number): boolean {
  return stored.length !== bytes && isSealed(stored.toString('latin1'))
}

/**
 * The named secret of `bytes` random bytes, created on first use; sealed at rest under
 * `encryptionKey` when one is given. Throws KeyProtectionError (naming KEY_ENCRYPTION_KEY) when
 * the stored secret is sealed and the key is missing or not the one it was sealed with.
 */
export async function loadServerSecret (repo: ServerSecretsRepository, name: string, encryptionKey: Buffer | undefined, bytes = 32): Promise<Buffer> {
  const context = `server_secret:${name}`
  const stored = (secret: Buffer): Buffer => encryptionKey === undefined ? secret : Buffer.from(seal(secret, context, encryptionKey), 'latin1')
  return await repo.resolve(name, (value) => {
    if (value === undefined) {
      const secret = randomBytes(bytes)
      return { result: secret, store: stored(secret) }
    }
    if (!storedSealed(value, bytes)) {
      // Written before KEY_ENCRYPTION_KEY was set: sealed now, in place.
      return encryptionKey === undefined ? { result: value } : { result: value, store: stored(value) }
    }
    if (encryptionKey === undefined) {
      throw new KeyProtectionError(`server secret ${name} (server_secrets) is encrypted at rest; set KEY_ENCRYPTION_KEY to the key it was sealed with`)
    }
    try {
      return { result: openSealed(value.toString('latin1'), context, encryptionKey) }
    } catch {
      throw new KeyProtectionError(`server secret ${name} (server_secrets) could not be decrypted: KEY_ENCRYPTION_KEY is not the key it was sealed with`)
    }
  })
}
