"""Signing in to the web console with the organisation's identity provider: `[console.oidc]`.

The console signs in the same people the approvals API authenticates, so it has no identity
provider of its own: it is an OAuth client of the one `[auth.people]` names, and the ID token it
receives is verified exactly like a person's token there. That is why its `client_id` must be one
of `[auth.people] audiences`: an ID token's audience is the client it was issued to. The check
needs both tables, so it is `check_console_client`, run where the whole configuration is known.
"""

from __future__ import annotations

import httpx
from pydantic import Field, SecretStr, field_validator

from gateway.settings.auth import PeopleSettings, is_loopback_host
from gateway.settings.base import SettingsModel

DEFAULT_SCOPES = ("openid", "profile", "email")


class ConsoleOidcSettings(SettingsModel):
    """The console's OAuth client at the `[auth.people]` provider (authorization code flow with PKCE)."""

    client_id: str = Field(
        min_length=1,
        description=(
            "The console's client id at the `[auth.people]` provider. It must be one of `[auth.people] audiences`, "
            "since the ID tokens the console receives name it as their audience."
        ),
    )
    client_secret: SecretStr | None = Field(
        default=None,
        description=(
            'The client secret of a confidential client; give it from the environment: `client_secret = "${VAR}"`. '
            "Unset: a public client, whose sign-ins PKCE alone protects."
        ),
    )
    scopes: tuple[str, ...] = Field(
        default=DEFAULT_SCOPES,
        description="Scopes asked for at sign-in; `openid` is required, since the ID token says who signed in.",
    )
    redirect_url: str | None = Field(
        default=None,
        description=(
            "Where the provider sends people back, registered at the provider as the client's redirect URI. "
            "Unset: `<scheme>://<host>/ui/auth/callback` of the request that started the sign-in; set it when a "
            "proxy changes the host or scheme the gateway sees."
        ),
    )
    label: str = Field(
        default="Sign in with your identity provider",
        min_length=1,
        description="The text of the console's sign-in button.",
    )

    @field_validator("scopes")
    @classmethod
    def _openid_asked_for(cls, scopes: tuple[str, ...]) -> tuple[str, ...]:
        for scope in scopes:
            if not scope or any(character.isspace() for character in scope):
                raise ValueError(f"scope {scope!r} must be one non-empty word")
        if "openid" not in scopes:
            raise ValueError("scopes must include 'openid': without it the provider returns no ID token")
        return scopes

    @field_validator("redirect_url")
    @classmethod
    def _redirect_safe(cls, url: str | None) -> str | None:
        if url is None:
            return None
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as error:
            raise ValueError(f"redirect_url {url!r} is not a URL: {error}") from None
        if parsed.scheme == "https" and parsed.host:
            return url
        if parsed.scheme == "http" and is_loopback_host(parsed.host):
            return url
        raise ValueError(
            f"redirect_url {url!r} must be an https:// URL (plain http is accepted only for localhost), "
            "because the sign-in code travels to it"
        )


def check_console_client(oidc: ConsoleOidcSettings, people: PeopleSettings | None) -> None:
    """Raise `ValueError` unless the console's client can sign people in through `[auth.people]`.

    Call it from the settings model that holds both `[auth]` and `[console]`.
    """
    if people is None:
        raise ValueError(
            "[console.oidc] signs people in with the identity provider [auth.people] names, and [auth.people] is "
            f"not configured: add it, with {oidc.client_id!r} among its audiences"
        )
    if oidc.client_id not in people.audiences:
        raise ValueError(
            f"[console.oidc] client_id {oidc.client_id!r} is not one of [auth.people] audiences "
            f"({', '.join(people.audiences)}): the console's ID tokens name its client id as their audience, so "
            f"add {oidc.client_id!r} to [auth.people] audiences"
        )
