"""Who may call: gateway.toml's `[auth]` table, its `[[auth.issuers]]` and its `[auth.people]`.

Agents authenticate with API keys the gateway issues, with JWT access tokens from the
organisation's identity providers, or both. People (approvers now, the web console later)
authenticate with user keys, or with tokens from the identity provider `[auth.people]` names.
Both kinds of issuer share `TokenIssuer`: the same keys, algorithms and claim checks verify them.
The issuer settings refuse, at load time, anything that would make tokens forgeable: unsigned
(`none`) or HMAC algorithms, and key sets fetched over plain HTTP from anywhere but the local
machine. And because an agent must never pass for a person, `[auth.people]` is refused when its
audiences overlap an agents' issuer's of the same provider, or when it names people by another
claim than the one that names the user an agent acts for.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx
from pydantic import Field, field_validator, model_validator

from gateway.settings.base import SettingsModel

#: The default of `auth.max_token_bytes`: room for tokens that carry many groups, far below what hurts.
DEFAULT_MAX_TOKEN_BYTES = 16384

#: The asymmetric JWS algorithms an issuer may be allowed to use. HMAC (`HS*`) is absent on
#: purpose: verifying one needs a secret shared with the issuer, and treating a published public
#: key as that secret is exactly how algorithm-confusion forgeries work.
SUPPORTED_ALGORITHMS = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
        "Ed25519",
        "Ed448",
    }
)

_LOOPBACK_NAMES = frozenset({"localhost"})


class TokenIssuer(SettingsModel):
    """An identity provider whose signed tokens the gateway verifies, for agents or for people.

    `issuer` must equal the tokens' `iss` exactly. Keys come from `jwks_url`, or, when it is not
    set, from the `jwks_uri` of the issuer's OpenID discovery document. `audiences` names the
    gateway as the provider knows it: a token whose `aud` names none of them was issued for
    another resource and is refused, even though the same provider signed it.
    """

    issuer: str = Field(min_length=1, description="The provider's issuer URL; a token's `iss` must equal it exactly.")
    jwks_url: str | None = Field(
        default=None,
        description="Where the signing keys are; unset: `jwks_uri` of `<issuer>/.well-known/openid-configuration`.",
    )
    audiences: tuple[str, ...] = Field(
        min_length=1, description="This gateway's names at the provider; a token whose `aud` names none is refused."
    )
    algorithms: tuple[str, ...] = Field(
        default=("RS256", "ES256", "PS256", "EdDSA"),
        description="Signature algorithms accepted; `none` and HMAC (`HS*`) are refused.",
    )
    leeway_seconds: float = Field(default=30, ge=0, description="Clock skew allowed when checking `exp` and `nbf`.")
    jwks_cache_seconds: float = Field(
        default=600, ge=0, description="Seconds the provider's keys are used before a refetch."
    )
    jwks_refetch_interval_seconds: float = Field(
        default=5,
        ge=0,
        description=(
            "Least time between two fetches of the issuer's key set. A token naming an unknown key id (`kid`) "
            "triggers a fetch at once unless one happened this recently, so a key rotated at the provider is "
            "accepted at once, while tokens naming invented key ids cause at most one fetch per interval."
        ),
    )

    @field_validator("audiences")
    @classmethod
    def _audiences_named(cls, audiences: tuple[str, ...]) -> tuple[str, ...]:
        if any(not audience for audience in audiences):
            raise ValueError("an audience cannot be empty")
        return audiences

    @field_validator("algorithms")
    @classmethod
    def _algorithms_asymmetric(cls, algorithms: tuple[str, ...]) -> tuple[str, ...]:
        if not algorithms:
            raise ValueError("allow at least one signing algorithm")
        for algorithm in algorithms:
            if algorithm.lower() == "none":
                raise ValueError("'none' cannot be allowed: it accepts unsigned, forgeable tokens")
            if algorithm.upper().startswith("HS"):
                raise ValueError(
                    f"{algorithm!r} cannot be allowed: HMAC tokens would be forgeable with the issuer's public key"
                )
            if algorithm not in SUPPORTED_ALGORITHMS:
                raise ValueError(f"unsupported algorithm {algorithm!r}; use some of {sorted(SUPPORTED_ALGORITHMS)}")
        return algorithms

    @model_validator(mode="after")
    def _keys_fetched_safely(self) -> TokenIssuer:
        check_key_url(self.jwks_url if self.jwks_url is not None else self.issuer, "jwks_url or issuer")
        return self

    @property
    def discovery_url(self) -> str:
        """Where the OpenID discovery document lives (OpenID Connect Discovery 1.0, section 4)."""
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


class IssuerSettings(TokenIssuer):
    """One identity provider whose access tokens agents present, and how to read who the agent is."""

    agent_claims: tuple[str, ...] = Field(
        default=("azp", "client_id"), min_length=1, description="Claims naming the agent; the first present wins."
    )
    user_claim: str | None = Field(
        default="sub",
        description="Claim naming the user the agent acts for (ignored when it equals the agent); unset: no user.",
    )
    roles_claims: tuple[str, ...] = Field(
        default=("roles", "groups"),
        description=(
            "Claims (names or dotted paths like `realm_access.roles`) whose values become the agent's Cedar Roles: a "
            "list of strings or one space-separated string. Listing `scope` here makes scopes roles too; prefer "
            "`scopes_claims`."
        ),
    )
    scopes_claims: tuple[str, ...] = Field(
        default=("scope", "scp"),
        description=(
            "Claims whose values are the token's scopes, given to policies as the set `principal.scopes` (never as "
            "roles) and checked by `required_scopes`; a space-separated string or a list of strings. Empty: no scopes."
        ),
    )
    required_scopes: tuple[str, ...] = Field(
        default=(), description="Scopes a token must all carry (read from `scopes_claims`) to be accepted."
    )

    @model_validator(mode="after")
    def _scopes_readable(self) -> IssuerSettings:
        if self.required_scopes and not self.scopes_claims:
            raise ValueError("required_scopes needs scopes_claims to name the claims the scopes are read from")
        return self


class PeopleSettings(TokenIssuer):
    """The identity provider people sign in with: approvers deciding held calls (and, later, the console).

    Its `audiences` are people's and only people's: the approvals API (or the console's OAuth
    client) as the provider knows it, never the `/mcp` resource agents get tokens for. A token is
    a person's or an agent's by its audience, so the two can never stand in for each other.
    """

    audiences: tuple[str, ...] = Field(
        min_length=1,
        description=(
            "The approvals API's names at the provider (typically its OAuth client id): a token whose `aud` names "
            "none is refused. Never the `/mcp` resource or an audience of `[[auth.issuers]]`: those are agents'."
        ),
    )
    user_claim: str = Field(
        default="sub",
        min_length=1,
        description=(
            "Claim whose value is the person's user id: what votes record and `user:NAME` approvers match. It must "
            "be the claim `[[auth.issuers]]` of the same provider reads the user an agent acts for from, so that "
            "nobody approves a call made for them. Choose one the provider controls (`preferred_username`, `email`, "
            "`sub`), never one a person can edit."
        ),
    )
    roles_claims: tuple[str, ...] = Field(
        default=("roles", "groups"),
        description=(
            "Claims (names or dotted paths like `realm_access.roles`) whose values are the person's roles, matched "
            "by `role:NAME` approvers: a list of strings or one space-separated string."
        ),
    )


class AuthSettings(SettingsModel):
    """Who may call: API keys issued by the gateway, and/or JWTs from the organisation's issuers.

    `people` is how people prove who they are besides their user keys; agents never use it.

    `resource` is this gateway's public `/mcp` URL, its OAuth resource identifier (RFC 8707/9728):
    it is announced in `/.well-known/oauth-protected-resource` and is the audience an issuer's
    tokens must carry unless the issuer names `audiences` itself.
    """

    key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="Seconds a verified API key is trusted before it is checked again in the database.",
    )
    revocation_poll_seconds: float = Field(
        default=0.5,
        gt=0,
        description=(
            "How often each gateway process looks for API keys revoked elsewhere (another replica, or "
            "`gateway keys revoke`) and stops accepting them: a revocation bites everywhere within about this long."
        ),
    )
    suspension_poll_seconds: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description=(
            "How often each gateway process reads the suspended agents (`gateway agents suspend`) when no signal "
            "told it sooner: the bound on how long a suspended agent may still be served, on SQLite, where the "
            "command cannot signal a running gateway, or when a PostgreSQL signal is lost. At most 1 second."
        ),
    )
    api_keys: bool = Field(default=True, description="Accept API keys made by `gateway keys create`.")
    max_token_bytes: int = Field(
        default=DEFAULT_MAX_TOKEN_BYTES,
        gt=0,
        description=(
            "Largest bearer credential (API key or JWT) accepted, in bytes; a longer one is refused with 401 "
            "before it is decoded, so oversized tokens cost no parsing."
        ),
    )
    resource: str | None = Field(
        default=None,
        description=(
            "This gateway's public `/mcp` URL, its OAuth resource id: turns on RFC 9728 metadata and the "
            "`WWW-Authenticate` hint, and is the default audience of issuers' tokens."
        ),
    )
    scopes_supported: tuple[str, ...] = Field(
        default=(), description="Scopes announced in the protected-resource metadata, for clients that ask for them."
    )
    issuers: tuple[IssuerSettings, ...] = Field(
        default=(), description="OpenID providers whose JWT access tokens are accepted (one `[[auth.issuers]]` each)."
    )
    people: PeopleSettings | None = Field(
        default=None,
        description=(
            "The OpenID provider whose tokens sign people in to decide held calls (the approvals API), besides user "
            "keys; unset: user keys only."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _audience_defaults_to_resource(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("resource") and isinstance(data.get("issuers"), list):
            data = {
                **data,
                "issuers": [
                    {**issuer, "audiences": [data["resource"]]}
                    if isinstance(issuer, dict) and "audiences" not in issuer
                    else issuer
                    for issuer in data["issuers"]
                ],
            }
        return data

    @model_validator(mode="after")
    def _some_way_in(self) -> AuthSettings:
        if not self.api_keys and not self.issuers:
            raise ValueError("enable API keys (api_keys = true) or configure at least one [[auth.issuers]]")
        return self

    @model_validator(mode="after")
    def _people_apart_from_agents(self) -> AuthSettings:
        people = self.people
        if people is None:
            return self
        for agents in self.issuers:
            if agents.issuer != people.issuer:
                continue
            shared = sorted(set(agents.audiences) & set(people.audiences))
            if shared:
                raise ValueError(
                    f"[auth.people] and the [[auth.issuers]] entry for {people.issuer!r} share the audience "
                    f"{shared[0]!r}, so an agent's token would pass for a person's: give people's sign-in an audience "
                    "of its own (the approvals client's id at the provider)"
                )
            if agents.user_claim is not None and agents.user_claim != people.user_claim:
                raise ValueError(
                    f"[auth.people] user_claim is {people.user_claim!r} but the [[auth.issuers]] entry for "
                    f"{people.issuer!r} reads the user an agent acts for from {agents.user_claim!r}: both must name "
                    "people alike, or a person could approve a call made for them"
                )
        return self


def check_key_url(url: str, what: str) -> None:
    """Refuse a URL that signing keys must not be fetched from, with a `ValueError` naming `what` it is.

    Whoever can alter the key set in transit can mint tokens, so keys travel over TLS; plain HTTP
    is only accepted to the local machine (development and tests).
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ValueError(f"{what} {url!r} is not a URL: {error}") from None
    if parsed.scheme == "https" and parsed.host:
        return
    if parsed.scheme == "http" and is_loopback_host(parsed.host):
        return
    raise ValueError(
        f"{what} {url!r} must be an https:// URL (plain http is accepted only for localhost), "
        "because whoever can alter the key set in transit can forge tokens"
    )


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a name or an address, as a URL carries it) is this machine: plain http is safe only there."""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
