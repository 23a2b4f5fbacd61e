"""The connector's own credentials on every request to its API; never the agent's.

Static credentials (API key, bearer, basic) are applied as they are. OAuth 2.0 client
credentials need a token: it is fetched on first use, kept until `refresh_before` seconds ahead
of its expiry, and renewed by one task at a time (concurrent calls wait for that one renewal
rather than each asking the token endpoint). A 401 from the API marks the token stale, so the
caller's one retry goes out with a fresh one.
"""

from __future__ import annotations

import base64
import logging
import time

import anyio
import httpx

from gateway.errors import BackendUnavailable
from gateway.settings.openapi_http import (
    ApiKeyAuth,
    BackendAuth,
    BasicAuth,
    BearerAuth,
    OAuth2ClientCredentialsAuth,
)

logger = logging.getLogger(__name__)

#: A token endpoint's error body quoted in an operator's message, at most this long.
_TOKEN_ERROR_LIMIT = 300
#: A token with no `expires_in` is kept this long: long enough to be cheap, short enough to follow rotations.
_DEFAULT_TOKEN_SECONDS = 300.0


class Credentials:
    """Puts the connector's credentials on a request; `renewable` says a 401 is worth one retry."""

    def __init__(self, auth: BackendAuth | None, client: httpx.AsyncClient, connector: str) -> None:
        self._auth = auth
        self._tokens = OAuthTokens(auth, client, connector) if isinstance(auth, OAuth2ClientCredentialsAuth) else None

    @property
    def renewable(self) -> bool:
        return self._tokens is not None

    async def apply(self, request: httpx.Request) -> None:
        auth = self._auth
        if isinstance(auth, ApiKeyAuth):
            if auth.header is not None:
                request.headers[auth.header] = auth.key.get_secret_value()
            else:
                assert auth.query is not None
                request.url = request.url.copy_merge_params({auth.query: auth.key.get_secret_value()})
        elif isinstance(auth, BearerAuth):
            request.headers["Authorization"] = f"Bearer {auth.token.get_secret_value()}"
        elif isinstance(auth, BasicAuth):
            request.headers["Authorization"] = _basic(auth.username, auth.password.get_secret_value())
        elif self._tokens is not None:
            request.headers["Authorization"] = f"Bearer {await self._tokens.current()}"

    def rejected(self, request: httpx.Request) -> None:
        """The API answered 401 to `request`: the token it carried is stale."""
        if self._tokens is not None:
            self._tokens.forget(request.headers.get("Authorization", "").removeprefix("Bearer "))


class OAuthTokens:
    """The client-credentials token of one connector, renewed before expiry, one renewal at a time."""

    def __init__(self, auth: OAuth2ClientCredentialsAuth, client: httpx.AsyncClient, connector: str) -> None:
        self._auth = auth
        self._client = client
        self._connector = connector
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = anyio.Lock()

    async def current(self) -> str:
        if self._token is not None and time.monotonic() < self._renew_at:
            return self._token
        async with self._lock:
            # Another call may have renewed it while this one waited for the lock.
            if self._token is None or time.monotonic() >= self._renew_at:
                self._token, lifetime = await self._fetch()
                self._renew_at = time.monotonic() + max(lifetime - self._auth.refresh_before, 0.0)
            return self._token

    def forget(self, token: str) -> None:
        """Drop `token` if it is still the current one (a concurrent call may have renewed it already)."""
        if token == self._token:
            self._token = None

    async def _fetch(self) -> tuple[str, float]:
        auth = self._auth
        form = {"grant_type": "client_credentials"}
        headers = {"Accept": "application/json"}
        if auth.scopes:
            form["scope"] = " ".join(auth.scopes)
        if auth.audience:
            form["audience"] = auth.audience
        if auth.client_auth == "basic":
            headers["Authorization"] = _basic(auth.client_id, auth.client_secret.get_secret_value())
        else:
            form["client_id"] = auth.client_id
            form["client_secret"] = auth.client_secret.get_secret_value()
        where = f"connector '{self._connector}': the token endpoint {auth.token_url}"
        try:
            response = await self._client.post(auth.token_url, data=form, headers=headers, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"{where} cannot be reached ({exc.__class__.__name__}); retry shortly") from None
        if response.status_code != 200:
            body = response.text[:_TOKEN_ERROR_LIMIT]
            logger.warning(
                "token request refused", extra={"connector": self._connector, "status": response.status_code}
            )
            raise BackendUnavailable(
                f"{where} refused the gateway's client credentials (HTTP {response.status_code}: {body}); "
                "an operator must check client_id, client_secret and scopes in the connector file"
            )
        try:
            payload = response.json()
            token = payload["access_token"]
            lifetime = float(payload.get("expires_in") or _DEFAULT_TOKEN_SECONDS)
        except (ValueError, KeyError, TypeError):
            raise BackendUnavailable(f"{where} answered without an access_token; check token_url") from None
        if not isinstance(token, str) or not token:
            raise BackendUnavailable(f"{where} answered without an access_token; check token_url")
        logger.info("access token obtained", extra={"connector": self._connector, "expires_in": lifetime})
        return token, lifetime


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
