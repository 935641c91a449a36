/**
 * One signing key: generation, the public JWK (only public members, ever), the RFC 7638
 * thumbprint used as `kid`, and encryption of the private key at rest.
 */
import { createCipheriv, createDecipheriv, createHash, createPrivateKey, createPublicKey, generateKeyPair as generateKeyPairCb, randomBytes, type KeyObject } from 'node:crypto'
import { promisify } from 'node:util'
import { calculateJwkThumbprint, type JWK } from 'jose'

export type AsymmetricAlgorithm = 'ES256' | 'RS256' | 'EdDSA'
export type Algorithm = AsymmetricAlgorithm | 'HS256'

/** The members a public JWK may carry per key type (RFC 7517/7518/8037). Nothing else is served. */
const PUBLIC_MEMBERS: Record<string, readonly string[]> = {
  EC: ['kty', 'crv', 'x', 'y'],
  RSA: ['kty', 'n', 'e'],
  OKP: ['kty', 'crv', 'x']
}

export interface PublicJwk extends JWK {
  kid: string
  alg: AsymmetricAlgorithm
  use: 'sig'
}

const generate = promisify(generateKeyPairCb)

/** Generated on the thread pool: an RSA key takes long enough to stall the event loop. */
export async function generateKeyPair (alg: AsymmetricAlgorithm, rsaModulusLength = 2048): Promise<{ privateKey: KeyObject, publicKey: KeyObject }> {
  switch (alg) {
    case 'ES256': return await generate('ec', { namedCurve: 'P-256' })
    case 'RS256': return await generate('rsa', { modulusLength: rsaModulusLength, publicExponent: 0x10001 })
    case 'EdDSA': return await generate('ed25519', undefined)
  }
}

/** The public JWK of `publicKey`, reduced to its public members, with kid = RFC 7638 thumbprint. */
export async function publicJwkOf (publicKey: KeyObject, alg: AsymmetricAlgorithm): Promise<PublicJwk> {
  const full = publicKey.export({ format: 'jwk' }) as Record<string, unknown>
  const members = PUBLIC_MEMBERS[String(full.kty)]
  if (members === undefined) throw new Error(`unsupported key type ${String(full.kty)}`)
  const jwk: Record<string, unknown> = {}
  for (const m of members) jwk[m] = full[m]
  const kid = await calculateJwkThumbprint(jwk as JWK, 'sha256')
  return { ...jwk, kid, alg, use: 'sig' } as PublicJwk
}

/**
 * The public JWK of a stored private key, derived from the private key itself (never from a
 * stored copy, so a tampered row cannot publish something else), after checking that the key
 * is of the type its algorithm needs.
 */
export async function publicJwkOfPrivate (privateKey: KeyObject, alg: AsymmetricAlgorithm): Promise<PublicJwk> {
  const details = privateKey.asymmetricKeyDetails ?? {}
  const fits = alg === 'ES256'
    ? privateKey.asymmetricKeyType === 'ec' && details.namedCurve === 'prime256v1'
    : alg === 'RS256'
      ? privateKey.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) >= 2048
      : privateKey.asymmetricKeyType === 'ed25519'
  if (!fits) throw new Error(`a ${privateKey.asymmetricKeyType ?? 'unknown'} key cannot sign ${alg}`)
  return await publicJwkOf(createPublicKey(privateKey), alg)
}

/** True when the stored private key is sealed with KEY_ENCRYPTION_KEY. */
export function isSealed (stored: string): boolean {
  return stored.startsWith(ENC_PREFIX)
}

/** A stable, non-reversible `kid` for the HS256 secret (never published). */
export function secretKid (secret: string): string {
  return 'hs-' + createHash('sha256').update('kid:').update(secret).digest('base64url').slice(0, 22)
}

const ENC_PREFIX = 'enc:v1:'

/**
 * Seals a secret under KEY_ENCRYPTION_KEY: AES-256-GCM with a fresh 96-bit IV, `context` as
 * associated data (so a ciphertext cannot be moved to another row or another use), stored as
 * `enc:v1:` + iv.tag.ciphertext in base64url. Used for the private signing keys (context: the
 * kid) and the server secrets (context: `server_secret:<name>`).
 */
export function seal (plaintext: Buffer, context: string, encryptionKey: Buffer): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', encryptionKey, iv)
  cipher.setAAD(Buffer.from(context))
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()])
  return ENC_PREFIX + [iv, cipher.getAuthTag(), ct].map((b) => b.toString('base64url')).join('.')
}

/** Opens what `seal` made with the same context and key; throws when either is not the one it was sealed with. */
export function openSealed (stored: string, context: string, encryptionKey: Buffer): Buffer {
  if (!isSealed(stored)) throw new Error('not a sealed value')
  const [iv, tag, ct] = stored.slice(ENC_PREFIX.length).split('.').map((p) => Buffer.from(p, 'base64url'))
  const decipher = createDecipheriv('aes-256-gcm', encryptionKey, iv!)
  decipher.setAAD(Buffer.from(context))
  decipher.setAuthTag(tag!)
  return Buffer.concat([decipher.update(ct!), decipher.final()])
}

/**
 * Private keys are stored as PKCS#8 PEM, or, when KEY_ENCRYPTION_KEY is set, sealed with
 * AES-256-GCM under that key with the kid as associated data (see `seal`).
 */
export function sealPrivateKey (privateKey: KeyObject, kid: string, encryptionKey?: Buffer): string {
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }) as string
  if (encryptionKey === undefined) return pem
  return seal(Buffer.from(pem, 'utf8'), kid, encryptionKey)
}

/**
 * Why a stored private key (or server secret) cannot be used. The service refuses to start on
 * it rather than signing with a new key the rest of the ring cannot vouch for.
 */
export class KeyProtectionError extends Error {
  override name = 'KeyProtectionError'
}

export function openPrivateKey (stored: string, kid: string, encryptionKey?: Buffer): KeyObject {
  if (!isSealed(stored)) {
    try {
      return createPrivateKey(stored)
    } catch {
      throw new KeyProtectionError(`signing key ${kid}: the stored private key is not a PKCS#8 PEM key`)
    }
  }
  if (encryptionKey === undefined) {
    throw new KeyProtectionError(`signing key ${kid} is encrypted at rest; set KEY_ENCRYPTION_KEY to the key it was sealed with`)
  }
  try {
    return createPrivateKey(openSealed(stored, kid, encryptionKey).toString('utf8'))
  } catch {
    throw new KeyProtectionError(`signing key ${kid} could not be decrypted: KEY_ENCRYPTION_KEY is not the key it was sealed with`)
  }
}

export function publicPemOf (privateKey: KeyObject): string {
  return createPublicKey(privateKey).export({ format: 'pem', type: 'spki' }) as string
}
