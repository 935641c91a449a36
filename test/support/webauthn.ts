/**
 * A software authenticator for tests: a P-256 key pair and a signature counter, producing
 * attestations ("none" format) and assertions exactly as the WebAuthn spec lays them out
 * (authenticatorData, clientDataJSON, an ES256 signature over authenticatorData ‖
 * SHA-256(clientDataJSON)), built here with node:crypto and a minimal CBOR encoder, so that
 * the service's verification runs on real ceremonies without a browser. It is a test tool
 * that plays the authenticator and the browser, not a stand-in for any part of the service.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto'

type Cbor = number | string | Buffer | Cbor[] | Map<Cbor, Cbor> | { [k: string]: Cbor }

function head (major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n])
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n])
  if (n < 0x10000) { const b = Buffer.alloc(3); b[0] = (major << 5) | 25; b.writeUInt16BE(n, 1); return b }
  const b = Buffer.alloc(5); b[0] = (major << 5) | 26; b.writeUInt32BE(n, 1); return b
}

/** RFC 8949 encoding of the few types attestation objects and COSE keys use. */
export function cbor (value: Cbor): Buffer {
  if (typeof value === 'number') return value >= 0 ? head(0, value) : head(1, -1 - value)
  if (typeof value === 'string') { const s = Buffer.from(value, 'utf8'); return Buffer.concat([head(3, s.length), s]) }
  if (Buffer.isBuffer(value)) return Buffer.concat([head(2, value.length), value])
  if (Array.isArray(value)) return Buffer.concat([head(4, value.length), ...value.map(cbor)])
  const entries = value instanceof Map ? [...value.entries()] : Object.entries(value)
  return Buffer.concat([head(5, entries.length), ...entries.flatMap(([k, v]) => [cbor(k), cbor(v)])])
}

const b64url = (b: Buffer): string => b.toString('base64url')
const sha256 = (b: Buffer | string): Buffer => createHash('sha256').update(b).digest()

const FLAG_UP = 0x01
const FLAG_UV = 0x04
const FLAG_AT = 0x40

export interface CeremonyOptions {
  /** The origin the "browser" reports in clientDataJSON. */
  origin?: string
  /** The RP id whose hash goes into authenticatorData (default: the options' rp id / the authenticator's). */
  rpId?: string
  /** The challenge to sign instead of the options' (a made-up or another ceremony's one). */
  challenge?: string
}

export class SoftAuthenticator {
  readonly credentialId = randomBytes(32)
  readonly privateKey: KeyObject
  readonly publicKey: KeyObject
  /** The signature counter; each assertion adds one first (0 stays 0 with `counterless`). */
  counter = 0
  userHandle: string | null = null
  rpId: string | null = null

  constructor (readonly defaultOrigin = 'http://localhost:3000', readonly counterless = false) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    this.privateKey = privateKey
    this.publicKey = publicKey
  }

  get id (): string { return b64url(this.credentialId) }

  /** A copy holding the same key and credential with its counter where this one's is now. */
  clone (): SoftAuthenticator {
    const copy = Object.create(SoftAuthenticator.prototype) as SoftAuthenticator
    Object.assign(copy, this)
    return copy
  }

  private coseKey (): Buffer {
    const jwk = this.publicKey.export({ format: 'jwk' })
    return cbor(new Map<Cbor, Cbor>([[1, 2], [3, -7], [-1, 1], [-2, Buffer.from(jwk.x!, 'base64url')], [-3, Buffer.from(jwk.y!, 'base64url')]]))
  }

  private clientData (type: string, challenge: string, origin: string): Buffer {
    return Buffer.from(JSON.stringify({ type, challenge, origin, crossOrigin: false }), 'utf8')
  }

  /** navigator.credentials.create() on creation options from /passkeys/register/options. */
  register (options: { challenge: string, rp: { id?: string }, user: { id: string } }, opts: CeremonyOptions = {}) {
    const rpId = opts.rpId ?? options.rp.id ?? 'localhost'
    this.rpId = rpId
    this.userHandle = options.user.id
    const clientDataJSON = this.clientData('webauthn.create', opts.challenge ?? options.challenge, opts.origin ?? this.defaultOrigin)
    const counter = Buffer.alloc(4); counter.writeUInt32BE(this.counter)
    const idLength = Buffer.alloc(2); idLength.writeUInt16BE(this.credentialId.length)
    const authData = Buffer.concat([sha256(rpId), Buffer.from([FLAG_UP | FLAG_UV | FLAG_AT]), counter, Buffer.alloc(16), idLength, this.credentialId, this.coseKey()])
    return {
      id: this.id,
      rawId: this.id,
      type: 'public-key' as const,
      clientExtensionResults: {},
      response: {
        clientDataJSON: b64url(clientDataJSON),
        attestationObject: b64url(cbor({ fmt: 'none', attStmt: {}, authData })),
        transports: ['internal']
      }
    }
  }

  /** navigator.credentials.get() on request options from /passkeys/login/options. */
  assert (options: { challenge: string, rpId?: string }, opts: CeremonyOptions = {}) {
    if (!this.counterless) this.counter++
    const rpId = opts.rpId ?? options.rpId ?? this.rpId ?? 'localhost'
    const clientDataJSON = this.clientData('webauthn.get', opts.challenge ?? options.challenge, opts.origin ?? this.defaultOrigin)
    const counter = Buffer.alloc(4); counter.writeUInt32BE(this.counter)
    const authenticatorData = Buffer.concat([sha256(rpId), Buffer.from([FLAG_UP | FLAG_UV]), counter])
    const signature = sign('sha256', Buffer.concat([authenticatorData, sha256(clientDataJSON)]), this.privateKey)
    return {
      id: this.id,
      rawId: this.id,
      type: 'public-key' as const,
      clientExtensionResults: {},
      response: {
        clientDataJSON: b64url(clientDataJSON),
        authenticatorData: b64url(authenticatorData),
        signature: b64url(signature),
        ...(this.userHandle === null ? {} : { userHandle: this.userHandle })
      }
    }
  }
}
