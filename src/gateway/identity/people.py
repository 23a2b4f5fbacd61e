"""People proving who they are: a user key made with the CLI, or a sign-in token from the organisation's IdP.

Approvers are people authenticated by the identity provider `[auth.people]` names or by user keys
(`gateway users create`), never agents. As at the agents' door, the credential's shape decides
which check sees it: a JWT is a sign-in token, anything else a user key, and an agent's API key
(`agw_...`) is refused by the user store, saying so.

A sign-in token goes through the same `TokenVerifier` as agents' tokens (signature by a key the
issuer publishes, allowed algorithms, `iss`, `aud`, `exp` and `nbf` with the issuer's leeway),
against `[auth.people]` only. Before anything is trusted, a token that is an agent's is refused as
one: a token the agents' door would take, from one of `[[auth.issuers]]` with one of its audiences
(the settings keep people's audiences apart from agents', so a token naming both is an agent's).
After it is verified, a token whose person is the very client that obtained it (a
client-credentials token: an agent acting for nobody) is refused too.

The person's name is the `user_claim`, their roles the `roles_claims`; the user store then
refuses a disabled local user of that name (`UserStore.vouched_for`). No local row is needed, so
a company whose people are in its IdP mints no gateway keys for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from gateway.errors import AuthenticationFailed
from gateway.identity.claims import audiences_of, claim_at, claimed_words
from gateway.identity.jwt_auth import TokenVerifier
from gateway.identity.signed_tokens import looks_like_jwt, parse_token, token_claims
from gateway.identity.users import User, UserStore
from gateway.settings.auth import AuthSettings, PeopleSettings

#: Why an agent's token is refused where people authenticate.
AGENT_TOKEN = (
    "this token identifies an agent, not a person: it was issued for the gateway's agents; approvers sign in "
    "with a token issued for people ([auth.people] audiences) or use a user key"
)
#: Why a token an agent got for itself (client credentials) is refused even when its audience is people's.
AGENT_ITSELF = (
    "this token identifies an agent, not a person: the person it names is the client that obtained it, "
    "as in a token an agent gets for itself"
)
PEOPLE_TOKENS_DISABLED = (
    "this gateway signs no one in with identity provider tokens ([auth.people] is not configured); "
    "use a user key: Authorization: Bearer agu_..."
)
#: The claims that name the client a token was issued to, compared with the person it names.
_CLIENT_CLAIMS = ("azp", "client_id")


class PeopleAuthenticator:
    """Authenticates people by user key, or by sign-in token when `auth.people` is configured.

    `auth` is the whole `[auth]` table: people's issuer, and agents' issuers so that their tokens
    are refused as agents' with a reason that says so. `http_client` and `clock` are as for
    `TokenVerifier`.
    """

    def __init__(
        self,
        users: UserStore,
        auth: AuthSettings,
        *,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._users = users
        self._people = auth.people
        self._agents = {issuer.issuer: frozenset(issuer.audiences) for issuer in auth.issuers}
        self._max_token_bytes = auth.max_token_bytes
        self._verifier = (
            TokenVerifier([auth.people], http_client=http_client, clock=clock, screen=self._screen)
            if auth.people is not None
            else None
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this authenticator created it."""
        if self._verifier is not None:
            await self._verifier.aclose()

    async def authenticate(self, presented: str) -> User:
        """The person the credential proves, or `AuthenticationFailed` saying why not."""
        # Headers arrive as latin-1, one character per byte, so the length is the size on the wire.
        if len(presented) > self._max_token_bytes:
            raise AuthenticationFailed(
                f"bearer credential is {len(presented)} bytes, over this gateway's limit of {self._max_token_bytes} "
                "(auth.max_token_bytes); ask the identity provider for a token with fewer claims"
            )
        if not looks_like_jwt(presented):
            return await self._users.authenticate(presented)
        if self._verifier is None:
            self._screen(token_claims(parse_token(presented)))
            raise AuthenticationFailed(PEOPLE_TOKENS_DISABLED)
        claims, settings = await self._verifier.verify(presented)
        name = _person(claims, settings)
        return await self._users.vouched_for(name, claimed_words(claims, settings.roles_claims))

    def _screen(self, claims: Mapping[str, Any]) -> None:
        """Refuse, before verifying it, a token that is an agent's or not meant for people's sign-in."""
        issuer = claims.get("iss")
        audiences = set(audiences_of(claims))
        agents = self._agents.get(issuer) if isinstance(issuer, str) else None
        if agents is not None and audiences & agents:  # the agents' door would take it
            raise AuthenticationFailed(AGENT_TOKEN)
        people = self._people
        if people is not None and issuer == people.issuer and not audiences & set(people.audiences):
            raise AuthenticationFailed(
                "token audience is not this gateway's sign-in for people: ask the identity provider for a token "
                f"issued for {' or '.join(people.audiences)}"
            )


def _person(claims: Mapping[str, Any], settings: PeopleSettings) -> str:
    """The person a verified token names by its `user_claim`; never the client that obtained it."""
    value = claim_at(claims, settings.user_claim)
    if value is None or value == "":
        raise AuthenticationFailed(f"token names no person: it has no {settings.user_claim!r} claim")
    if not isinstance(value, str):
        raise AuthenticationFailed(f"token claim {settings.user_claim!r} is not a string")
    if any(claims.get(client) == value for client in _CLIENT_CLAIMS):
        raise AuthenticationFailed(AGENT_ITSELF)
    return value
