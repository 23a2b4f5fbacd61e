"""How an OpenAPI connector reaches its REST API: credentials, TLS, retries and response bounds.

These are the connector's own credentials, from its file (with `${ENV}` references for the
secrets): the agent's token never reaches the API. Secrets are `SecretStr` so that no log,
error or `repr` of the settings prints them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.settings.base import SettingsModel

#: 4 MiB: far above any page of records an agent can use, far below what hurts the gateway's memory.
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024


class ApiKeyAuth(SettingsModel):
    """An API key sent in a header (`X-API-Key`) or a query parameter (`api_key`) on every request."""

    type: Literal["api_key"] = Field(description="An API key in a header or a query parameter.")
    key: SecretStr = Field(description='The key, usually `"${CRM_API_KEY}"`.')
    header: str | None = Field(default=None, description="The header that carries the key, e.g. `X-API-Key`.")
    query: str | None = Field(default=None, description="The query parameter that carries the key, e.g. `api_key`.")

    @model_validator(mode="after")
    def _one_place(self) -> ApiKeyAuth:
        if (self.header is None) == (self.query is None):
            raise ValueError('set exactly one of header (e.g. header = "X-API-Key") or query (e.g. query = "api_key")')
        return self


class BearerAuth(SettingsModel):
    """A static bearer token: `Authorization: Bearer <token>`."""

    type: Literal["bearer"] = Field(description="A static bearer token.")
    token: SecretStr = Field(description='The token, usually `"${CRM_TOKEN}"`.')


class BasicAuth(SettingsModel):
    """HTTP basic authentication: `Authorization: Basic base64(username:password)`."""

    type: Literal["basic"] = Field(description="HTTP basic authentication.")
    username: str = Field(description="The user name.")
    password: SecretStr = Field(description='The password, usually `"${CRM_PASSWORD}"`.')


class OAuth2ClientCredentialsAuth(SettingsModel):
    """OAuth 2.0 client credentials: the gateway gets its own access token and renews it before it expires."""

    type: Literal["oauth2_client_credentials"] = Field(description="OAuth 2.0 client credentials grant.")
    token_url: str = Field(description="The authorization server's token endpoint, an http:// or https:// URL.")
    client_id: str = Field(description="The gateway's client id at the authorization server.")
    client_secret: SecretStr = Field(description='The client secret, usually `"${CRM_CLIENT_SECRET}"`.')
    scopes: tuple[str, ...] = Field(default=(), description="Scopes requested with each token (none: the server's).")
    audience: str | None = Field(
        default=None, description="The `audience` parameter some servers require (Auth0, Okta); unset: not sent."
    )
    client_auth: Literal["basic", "body"] = Field(
        default="basic",
        description=(
            "How the client authenticates at the token endpoint: `basic` (HTTP basic, RFC 6749's default) or "
            "`body` (`client_id` and `client_secret` form fields)."
        ),
    )
    refresh_before: float = Field(
        default=60.0,
        ge=0,
        description="Seconds before a token's expiry when it is renewed, so no call goes out with an expiring token.",
    )

    @field_validator("token_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


BackendAuth = Annotated[ApiKeyAuth | BearerAuth | BasicAuth | OAuth2ClientCredentialsAuth, Field(discriminator="type")]


class BackendTls(SettingsModel):
    """TLS to the API: a client certificate (mTLS), a private CA, or (for tests only) no verification."""

    client_cert: Path | None = Field(
        default=None, description="PEM client certificate for mTLS, relative to this file (with `client_key`)."
    )
    client_key: Path | None = Field(
        default=None, description="PEM private key of `client_cert`, relative to this file; unset: in `client_cert`."
    )
    ca_bundle: Path | None = Field(
        default=None, description="PEM CA certificates that verify the API's certificate; unset: the system's."
    )
    verify: bool = Field(
        default=True,
        description="`false` accepts any server certificate: only for a test API, never in production.",
    )

    @model_validator(mode="after")
    def _key_needs_cert(self) -> BackendTls:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key is set without client_cert: give the certificate the key belongs to")
        return self


class RetryPolicy(SettingsModel):
    """Retries of idempotent calls (GET, HEAD, PUT, DELETE, OPTIONS) on connection errors, 429, 502, 503 and 504."""

    attempts: int = Field(default=3, ge=1, le=10, description="Attempts in all, the first included; `1` never retries.")
    initial_backoff: float = Field(
        default=0.2, gt=0, description="Seconds before the first retry; each retry doubles it, with random jitter."
    )
    max_backoff: float = Field(default=5.0, gt=0, description="The longest wait between two attempts, in seconds.")
    max_retry_after: float = Field(
        default=30.0,
        ge=0,
        description=(
            "The longest `Retry-After` the gateway waits; an API asking for longer gets no retry and the agent "
            "gets its answer."
        ),
    )
