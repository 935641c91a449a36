/** Reading a compact JWS in tests: header and payload decoded, the signature NOT verified. */

export type Claims = Record<string, any>

export interface DecodedJwt {
  header: Claims
  payload: Claims
}

function part (token: string, index: 0 | 1): Claims {
  const segment = token.split('.')[index]
  if (segment === undefined) throw new Error(`not a compact JWS: ${token}`)
  return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'))
}

/** Decodes a JWT's header and payload without verifying it. */
export function decodeJwt (token: string): DecodedJwt {
  return { header: part(token, 0), payload: part(token, 1) }
}

/** The decoded (unverified) payload of a JWT. */
export function claimsOf (token: string): Claims {
  return part(token, 1)
}

/** The decoded (unverified) header of a JWT. */
export function headerOf (token: string): Claims {
  return part(token, 0)
}

/** The session id (`sid`) an access token names. */
export function sidOf (token: string): string {
  return claimsOf(token).sid as string
}
