"""A service written in Python verifying the auth service's access tokens with PyJWT.

This is the reference for docs/verifying-tokens.md: nothing but the JWKS URL, the issuer and
the audience. Reads a JSON list of {jwksUrl, issuer, audience, token} on stdin and prints one
JSON result per token: {"ok": true, "claims": ..., "kid": ..., "alg": ...} or
{"ok": false, "error": ...}.
"""
import json
import sys

import jwt
from jwt import PyJWKClient

# Headers that would name a key other than by our kid; the service never sets them.
FOREIGN_KEY_HEADERS = ("jku", "x5u", "jwk", "x5c")
ASYMMETRIC = ("ES256", "RS256", "EdDSA")


def verify(client, token, issuer, audience):
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "at+jwt":
        raise jwt.InvalidTokenError("typ is not at+jwt")
    if any(h in header for h in FOREIGN_KEY_HEADERS):
        raise jwt.InvalidTokenError("the token names its key by a foreign header")
    if not header.get("kid"):
        raise jwt.InvalidTokenError("the token has no kid")
    # Unknown kid: PyJWKClient refetches the key set once before giving up.
    signing_key = client.get_signing_key_from_jwt(token)
    # The algorithm comes from the key, never from the token.
    alg = signing_key._jwk_data.get("alg")
    if alg not in ASYMMETRIC:
        raise jwt.InvalidTokenError("the key is not an asymmetric signing key")
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=[alg],
        issuer=issuer,
        audience=audience,
        leeway=5,
        options={"require": ["iss", "aud", "sub", "exp", "iat"]},
    )
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
