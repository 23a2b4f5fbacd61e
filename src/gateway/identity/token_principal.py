"""Who a verified token speaks for, as the same `Principal` an API key ends in.

The agent is the OAuth client that obtained the token, the user the subject it acts for, the
roles come from the token's role and group claims, and the scopes from its scope claims. Scopes
are kept apart from roles: a scope is what the client asked for and the user consented to, often
chosen by the client itself, so a token whose scope says `admin` must not put the agent in
`Role::"admin"`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.errors import AuthenticationFailed
from gateway.identity.claims import claim_at, claimed_words
from gateway.identity.principal import Principal
from gateway.settings.auth import IssuerSettings

AUTH_METHOD = "jwt"

_MAX_AGENT_NAME_LENGTH = 256


def token_principal(claims: Mapping[str, Any], settings: IssuerSettings) -> Principal:
    """The principal of a token whose signature and claims have been checked, read as its issuer says."""
    agent = _agent(claims, settings.agent_claims)
    user: str | None = None
    if settings.user_claim is not None:
        value = claim_at(claims, settings.user_claim)
        if value is not None and not isinstance(value, str):
            raise AuthenticationFailed(f"token claim {settings.user_claim!r} is not a string")
        # A client-credentials token's subject is often the client itself: it acts for nobody.
        user = value if value and value != agent else None
    jti = claims.get("jti")
    return Principal(
        agent=agent,
        roles=claimed_words(claims, settings.roles_claims),
        scopes=claimed_words(claims, settings.scopes_claims),
        user=user,
        auth_method=AUTH_METHOD,
        credential_id=jti if isinstance(jti, str) and jti else None,
    )


def _agent(claims: Mapping[str, Any], names: Sequence[str]) -> str:
    for name in names:
        value = claim_at(claims, name)
        if value is None:
            continue
        if not isinstance(value, str) or not value or len(value) > _MAX_AGENT_NAME_LENGTH or not value.isprintable():
            raise AuthenticationFailed(f"token claim {name!r} is not a usable agent name")
        return value
    raise AuthenticationFailed(f"token names no agent: it has none of the claims {', '.join(names)}")
