"""A service written in Python verifying the auth service's access tokens with PyJWT.

This is the reference for docs/consuming-services.md, "In any other language": nothing but the JWKS
URL, the issuer and the audience. Reads a JSON list of {jwksUrl, issuer, audience, token} on stdin and prints one
JSON result per token: {"ok": true, "claims": ..., "kid": ..., "alg": ...} or
{"ok": false, "error": ...}.
"""
import json
import sys

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt import PyJWKClient

# Headers that would name a key other than by our kid; the service never sets them.
FOREIGN_KEY_HEADERS = ("jku", "x5u", "jwk", "x5c", "x5t")
# Claims every access token carries (API.md, "Access tokens").
REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "jti"]


def algorithm_of(public_key):
    """The one algorithm the service signs with a key of this type: from the key, never the token."""
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise jwt.InvalidTokenError("the key is not a signing key of this service")


def verify(client, token, issuer, audience):
    header = jwt.get_unverified_header(token)
    if str(header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
        raise jwt.InvalidTokenError("typ is not at+jwt")
    if any(h in header for h in FOREIGN_KEY_HEADERS):
        raise jwt.InvalidTokenError("the token names its key by a foreign header")
    if not header.get("kid"):
        raise jwt.InvalidTokenError("the token has no kid")
    # Unknown kid: PyJWKClient refetches the key set once before giving up.
    signing_key = client.get_signing_key_from_jwt(token)
    alg = algorithm_of(signing_key.key)
    if header.get("alg") != alg:
        raise jwt.InvalidTokenError("the token's alg is not its key's")
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=[alg],
        issuer=issuer,
        audience=audience,
        leeway=5,
        options={"require": REQUIRED_CLAIMS},
    )
    if not isinstance(claims.get("sid"), str) or not isinstance(claims.get("roles"), list):
        raise jwt.InvalidTokenError("sid or roles missing")
    return claims, signing_key.key_id, alg


def main():
    cases = json.load(sys.stdin)
    clients = {}
    results = []
    for case in cases:
        client = clients.setdefault(case["jwksUrl"], PyJWKClient(case["jwksUrl"]))
        try:
            claims, kid, alg = verify(client, case["token"], case["issuer"], case["audience"])
            results.append({"ok": True, "claims": claims, "kid": kid, "alg": alg})
        except Exception as error:  # every refusal is reported, none is fatal
            results.append({"ok": False, "error": f"{type(error).__name__}: {error}"})
    json.dump({"pyjwt": jwt.__version__, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
