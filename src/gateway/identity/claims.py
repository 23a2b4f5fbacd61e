"""What a token's claims must say before the gateway believes them, and how claims are read.

The registered claims are checked by joserfc's `JWTClaimsRegistry`: the token must carry an
expiry (`exp`), be within its validity window (`exp`, `nbf`, `iat`, with the issuer's leeway for
clock skew), come from the issuer whose keys verified it (`iss`) and name this gateway among its
audiences (`aud`). A token without `aud` is refused too: it may have been issued for any
resource of the same provider. Then the scopes the issuer requires must all be granted.

Only those claims go through the registry; the others are read by the gateway's own rules, so
that an odd `sub` or `jti` refuses a token only where the gateway actually uses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from joserfc.errors import ClaimError, MissingClaimError
from joserfc.jwt import JWTClaimsRegistry

from gateway.errors import AuthenticationFailed
from gateway.settings.auth import IssuerSettings, TokenIssuer

#: The refusal of a token without one of the claims it must carry, by claim.
_MISSING = {
    "exp": "token has no expiry ('exp'); tokens without one are not accepted",
    "aud": "token names no audience ('aud'), so it may be meant for another resource",
    "iss": "token names no issuer ('iss')",
}
#: The refusal of a time claim that is a NumericDate but out of range, by claim.
_OUT_OF_RANGE = {
    "exp": "token expired",
    "nbf": "token not yet valid ('nbf' is in the future)",
    "iat": "token not yet valid: it was issued in the future ('iat')",
}
#: Checked in this order, so a token wrong in several ways is refused for the same one each time:
#: first when it is valid, then whom it is for.
_LIFETIME_CLAIMS = ("exp", "nbf", "iat")
_AUDIENCE_CLAIMS = ("aud", "iss")


class ClaimsCheck:
    """One issuer's rules for the claims of a token whose signature has been verified.

    `clock` is wall-clock time in seconds. NumericDates are compared in whole seconds, as joserfc
    does; a fractional leeway is rounded up, so no token within the configured skew is refused.
    """

    def __init__(self, settings: TokenIssuer, clock: Callable[[], float]) -> None:
        self._lifetime = JWTClaimsRegistry(
            now=lambda: math.floor(clock()), leeway=math.ceil(settings.leeway_seconds), exp={"essential": True}
        )
        self._audience = JWTClaimsRegistry(
            iss={"essential": True, "value": settings.issuer},
            aud={"essential": True, "values": list(settings.audiences)},
        )

    def check(self, claims: Mapping[str, Any]) -> None:
        """Return if the claims are acceptable, else raise `AuthenticationFailed` saying why."""
        try:
            self._lifetime.validate(_only(claims, _LIFETIME_CLAIMS))
            self._audience.validate(_only(claims, _AUDIENCE_CLAIMS))
        except ClaimError as error:
            raise AuthenticationFailed(_refusal(error)) from None


def check_scopes(claims: Mapping[str, Any], settings: IssuerSettings) -> None:
    """Return if an agent's token carries every scope its issuer requires, else `AuthenticationFailed`."""
    if settings.required_scopes:
        granted = set(claimed_words(claims, settings.scopes_claims))
        missing = [scope for scope in settings.required_scopes if scope not in granted]
        if missing:
            raise AuthenticationFailed(f"token lacks required scope(s): {' '.join(missing)}")


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by dotted path into nested objects (`realm_access.roles`).

    The literal name wins, because some providers use URLs with dots as claim names.
    """
    if path in claims:
        return claims[path]
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def claimed_words(claims: Mapping[str, Any], paths: Sequence[str]) -> tuple[str, ...]:
    """The names found under any of `paths`, each once, in the order the claims list them."""
    found: dict[str, None] = {}
    for path in paths:
        found.update(dict.fromkeys(_words(claim_at(claims, path))))
    return tuple(found)


def audiences_of(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """The audiences a token names, unverified: `aud` is one string or a list of them (RFC 7519)."""
    value = claims.get("aud")
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str))
    return ()


def _words(value: object) -> list[str]:
    """Role-like names from a claim: a list of strings, or one space-separated string (`scope`)."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str) and item]
    return []


def _only(claims: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {name: claims[name] for name in names if name in claims}


def _refusal(error: ClaimError) -> str:
    """joserfc's refusal in the words agents and operators know from the gateway."""
    if isinstance(error, MissingClaimError):
        missing = error.claim.split(",")  # every essential claim absent, comma-separated
        return next(refusal for claim, refusal in _MISSING.items() if claim in missing)
    if error.claim in _OUT_OF_RANGE:
        # joserfc tells a time that is not a number from one out of range only by its description.
        if "NumericDate" in (error.description or ""):
            return f"token claim {error.claim!r} is not a NumericDate"
        return _OUT_OF_RANGE[error.claim]
    if error.claim == "aud":
        return "token audience is not this gateway"
    return f"token claim {error.claim!r} is not valid"
