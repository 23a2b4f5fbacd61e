"""A JWT as it arrives: its shape, its decoded header and payload, and the registry that checks its signature.

Nothing here trusts the token: the header is read only to know which algorithm and key must have
signed it, and the payload only to know which issuer's keys to ask for. Anything that cannot be
decoded is refused as a malformed JWT before any key is fetched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from joserfc.errors import JoseError
from joserfc.jws import CompactSignature, JWSRegistry, extract_compact

from gateway.errors import AuthenticationFailed
from gateway.settings.auth import SUPPORTED_ALGORITHMS

_SEGMENT = r"[A-Za-z0-9_-]+"
#: Header and payload are never empty; the signature segment is empty only in unsigned
#: (`alg: none`) tokens, which still count as JWTs so that they are refused as such.
_JWT_PATTERN = re.compile(rf"{_SEGMENT}\.{_SEGMENT}\.[A-Za-z0-9_-]*")


def looks_like_jwt(credential: str) -> bool:
    """Whether a bearer credential has the shape of a JWT: three base64url segments.

    Only the shape is checked, so that a credential can be routed to the right authenticator
    before anything is decoded; API keys (`agw_...`) never contain a dot.
    """
    return _JWT_PATTERN.fullmatch(credential) is not None


def algorithm_registry(algorithms: Sequence[str]) -> JWSRegistry:
    """A JWS registry that allows exactly `algorithms`.

    Unknown header parameters are tolerated (providers add their own, such as `x5t` or `nonce`),
    but `crit` ones are still refused, as RFC 7515 requires. The size limits are widened from the
    library defaults so that 8192-bit RSA signatures and headers carrying certificates still fit.
    """
    registry = JWSRegistry(algorithms=list(algorithms), strict_check_header=False)
    registry.max_header_length = 8192
    registry.max_signature_length = 2048
    return registry


_PARSING_REGISTRY = algorithm_registry(sorted(SUPPORTED_ALGORITHMS))


def parse_token(token: str) -> CompactSignature:
    """The token's header, payload and signature, or `AuthenticationFailed` saying it is malformed."""
    try:
        signed = extract_compact(token.encode("ascii"), registry=_PARSING_REGISTRY)
    except (JoseError, ValueError, RecursionError) as error:
        # RecursionError: JSON nested deeper than the parser goes, sent to crash the request.
        detail = error.description if isinstance(error, JoseError) else "undecodable header or payload"
        raise AuthenticationFailed(f"malformed JWT: {detail}") from None
    if not isinstance(signed.protected, dict):
        raise AuthenticationFailed("malformed JWT: the header is not a JSON object")
    if "b64" in signed.protected:
        raise AuthenticationFailed("malformed JWT: the 'b64' header is not accepted in a JWT")
    return signed


def token_claims(signed: CompactSignature) -> dict[str, Any]:
    """The payload as a claims object; not yet trusted, since the signature may not have been checked."""
    try:
        claims = json.loads(signed.payload)
    except (ValueError, RecursionError):
        raise AuthenticationFailed("malformed JWT: the payload is not JSON") from None
    if not isinstance(claims, dict):
        raise AuthenticationFailed("malformed JWT: the payload is not a JSON object")
    return claims
