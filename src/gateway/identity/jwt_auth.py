"""JWT bearer tokens from OIDC providers, checked against each issuer's published keys.

An agent that got an access token from the organisation's identity provider (Entra ID, Okta,
Keycloak, Auth0, ...) presents it as its bearer credential. The gateway accepts it only when the
token is signed by a key the configured issuer publishes (`key_sets`), with an algorithm that
issuer is allowed to use, and its claims say it is meant for this gateway and valid now
(`claims`). The token then ends in the same `Principal` as an API key (`token_principal`).

`TokenVerifier` is that check and nothing more, so people's sign-in tokens (`people`) go through
exactly the same one; only what a verified token is read as differs. A person's token is refused
here by its audience, before anything else is trusted: it is never an agent's credential.

Only asymmetric algorithms are accepted. `none` would accept forged tokens, and an HMAC
algorithm would let anyone who knows the issuer's *public* key sign tokens (the classic
algorithm-confusion attack), so neither can be configured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import httpx
from joserfc.errors import JoseError
from joserfc.jws import CompactSignature, validate_compact

from gateway.errors import AuthenticationFailed
from gateway.identity.claims import ClaimsCheck, audiences_of, check_scopes
from gateway.identity.key_sets import KeySet
from gateway.identity.principal import Principal
from gateway.identity.quoting import quoted
from gateway.identity.signed_tokens import algorithm_registry, looks_like_jwt, parse_token, token_claims
from gateway.identity.token_principal import token_principal
from gateway.settings.auth import IssuerSettings, PeopleSettings, TokenIssuer

_HTTP_TIMEOUT_SECONDS = 10.0

#: Why a person's sign-in token is refused where agents authenticate.
PERSON_TOKEN = (
    "this token identifies a person, not an agent: it was issued for people's sign-in to the approvals API "
    "([auth.people] audiences); an agent needs a token issued for this gateway's agents"
)

IssuerT = TypeVar("IssuerT", bound=TokenIssuer)
#: Looks at a token's claims before its signature is checked, and raises `AuthenticationFailed` to refuse it.
Screen = Callable[[Mapping[str, Any]], None]


class TokenVerifier(Generic[IssuerT]):
    """Checks that a JWT was signed by one of `issuers` and that its registered claims hold; reads nothing else.

    `http_client` fetches discovery documents and key sets; when none is given the verifier owns
    one and `aclose` closes it. `clock` is wall-clock time in seconds (token times are
    wall-clock), replaceable for tests; it also times the key cache. `screen` sees the claims
    before the issuer is even looked up, to refuse tokens of the wrong kind with a reason that
    says so; it may only refuse, since nothing it sees has been verified.
    """

    def __init__(
        self,
        issuers: Sequence[IssuerT],
        *,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        screen: Screen | None = None,
    ) -> None:
        if not issuers:
            raise ValueError("configure at least one token issuer")
        self._owns_client = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=_HTTP_TIMEOUT_SECONDS, follow_redirects=False)
        self._issuers: dict[str, _Issuer[IssuerT]] = {}
        for settings in issuers:
            if settings.issuer in self._issuers:
                raise ValueError(f"token issuer {settings.issuer!r} is configured twice")
            self._issuers[settings.issuer] = _Issuer(settings, self._http, clock)
        self._algorithms = frozenset(alg for settings in issuers for alg in settings.algorithms)
        self._screen = screen

    async def aclose(self) -> None:
        """Close the HTTP client if this verifier created it."""
        if self._owns_client:
            await self._http.aclose()

    async def verify(self, token: str) -> tuple[dict[str, Any], IssuerT]:
        """The token's claims and the issuer that signed it, or `AuthenticationFailed` naming what was wrong.

        The signature is checked before any claim is trusted; the issuer is chosen by the
        unverified `iss` only to know whose keys must have signed the token.
        """
        if not looks_like_jwt(token):
            raise AuthenticationFailed("malformed JWT: expected three base64url segments")
        signed = parse_token(token)
        algorithm = signed.protected.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise AuthenticationFailed(f"unsupported token algorithm {quoted(algorithm)}")
        claims = token_claims(signed)
        if self._screen is not None:
            self._screen(claims)
        issuer_name = claims.get("iss")
        if issuer_name is None:
            raise AuthenticationFailed("token names no issuer ('iss')")
        issuer = self._issuers.get(issuer_name) if isinstance(issuer_name, str) else None
        if issuer is None:
            raise AuthenticationFailed(f"unknown token issuer {quoted(issuer_name)}")
        await issuer.verify_signature(signed, algorithm)
        issuer.claims.check(claims)
        return claims, issuer.settings


class JwtAuthenticator:
    """Turns an agent's JWT from one of the configured issuers into a `Principal`, or refuses it saying why.

    With `people` configured, a token issued for people's sign-in (its issuer, one of its
    audiences) is refused as a person's, even if an agents' issuer would otherwise accept it.
    """

    def __init__(
        self,
        issuers: Sequence[IssuerSettings],
        *,
        people: PeopleSettings | None = None,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._people = people
        self._verifier = TokenVerifier(issuers, http_client=http_client, clock=clock, screen=self._refuse_people)

    async def aclose(self) -> None:
        """Close the HTTP client if this authenticator created it."""
        await self._verifier.aclose()

    async def authenticate(self, token: str) -> Principal:
        """The principal a token speaks for, or `AuthenticationFailed` naming what was wrong."""
        claims, settings = await self._verifier.verify(token)
        check_scopes(claims, settings)
        return token_principal(claims, settings)

    def _refuse_people(self, claims: Mapping[str, Any]) -> None:
        people = self._people
        if people is not None and claims.get("iss") == people.issuer:
            if set(audiences_of(claims)) & set(people.audiences):
                raise AuthenticationFailed(PERSON_TOKEN)


class _Issuer(Generic[IssuerT]):
    """One configured issuer: its algorithm registry, its key set and its claim rules."""

    def __init__(self, settings: IssuerT, http: httpx.AsyncClient, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.claims = ClaimsCheck(settings, clock)
        self._registry = algorithm_registry(settings.algorithms)
        self._keys = KeySet(settings, http, clock)

    async def verify_signature(self, signed: CompactSignature, algorithm: str) -> None:
        settings = self.settings
        if algorithm not in settings.algorithms:
            raise AuthenticationFailed(
                f"unsupported token algorithm {quoted(algorithm)} for issuer {quoted(settings.issuer)}"
            )
        try:
            self._registry.check_header(signed.protected)
            model = self._registry.get_alg(algorithm)
        except JoseError as error:
            raise AuthenticationFailed(f"malformed JWT header: {error.description}") from None
        kid = signed.protected.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthenticationFailed("malformed JWT header: 'kid' must be a string")
        key = await self._keys.key_for(kid, model)
        try:
            valid = validate_compact(signed, key, registry=self._registry)
        except JoseError as error:
            raise AuthenticationFailed(f"token cannot be verified: {error.description}") from None
        if not valid:
            raise AuthenticationFailed("invalid token signature")
