"""Signing people in to the console with the organisation's identity provider (OpenID Connect).

The console is an OAuth client of the provider `[auth.people]` names, and uses the authorization
code flow with PKCE (S256): `begin` sends the person's browser to the provider, `finish` takes
the code it comes back with, redeems it at the provider's token endpoint, and believes the ID
token only as the approvals API believes a person's token, through `PeopleAuthenticator`: the
same keys, algorithms, issuer, audience and lifetime checks, the same refusal of agents' tokens,
the same reading of the person's name and roles. On top of that the ID token must have been
issued to the console's own client for this very sign-in (its `nonce`).

The protocol's moving parts (the random values, the authorization URL with its code challenge,
the token request and how the client authenticates in it) are authlib's, a maintained OAuth
client, driven over the gateway's own httpx client; what is the gateway's own is what it
remembers between the two halves (`signin_cookie`) and what a person is told when it fails.

Every failure is `AuthenticationFailed` with a message for the person signing in; codes, tokens
and verifiers are never put in a message or a log.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit, urlunsplit

import anyio
import httpx
from authlib.common.security import generate_token
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.client import OAuth2Client
from authlib.oauth2.rfc6749.parameters import prepare_token_request
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.console.signin_cookie import SIGN_IN_SECONDS, PendingSignIn, SignInCookie
from gateway.errors import AuthenticationFailed, ConfigError
from gateway.identity.claims import audiences_of
from gateway.identity.discovery import IssuerDocumentUnavailable, fetch_json_object
from gateway.identity.people import PeopleAuthenticator
from gateway.identity.signed_tokens import looks_like_jwt, parse_token, token_claims
from gateway.identity.users import User
from gateway.settings.auth import PeopleSettings, is_loopback_host
from gateway.settings.console_oidc import ConsoleOidcSettings, check_console_client

logger = logging.getLogger(__name__)

#: The cookie that holds a sign-in in progress.
COOKIE_NAME = "gateway_console_signin"
#: Where a person goes after signing in when the console asked for nowhere, or for somewhere outside it.
CONSOLE_HOME = "/ui"
#: Where the provider sends people back, under the gateway's base URL, unless `redirect_url` says otherwise.
CALLBACK_PATH = "ui/auth/callback"
#: How long the provider's endpoints, read from its discovery document, are used before being read again.
DISCOVERY_CACHE_SECONDS = 3600.0

START_AGAIN = "sign-in took too long or was started elsewhere; start again"
_HTTP_TIMEOUT_SECONDS = 10.0
_TOKEN_REQUEST_HEADERS = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
_MAX_RETURN_TO_CHARS = 1024
_MAX_PROVIDER_TEXT = 300


@dataclass(frozen=True, slots=True)
class _Endpoints:
    """Where the provider signs people in and redeems codes, and how the console proves itself there."""

    authorization: str
    token: str
    client_auth_method: str


class ConsoleSignIn:
    """The console's sign-in with the `[auth.people]` provider: `begin` in one request, `finish` in the callback.

    `authenticator` verifies the ID token, exactly as it verifies a person's token at the
    approvals API. `http_client` reads the discovery document and redeems codes; when none is
    given one is made, and `aclose` closes it. `cookie_secrets` are `[server] session_keys`, so
    that any process behind the endpoint can finish a sign-in another one began; without them a
    sign-in must come back to the process that began it. `clock` is wall-clock time in seconds.
    """

    def __init__(
        self,
        settings: ConsoleOidcSettings,
        people: PeopleSettings,
        authenticator: PeopleAuthenticator,
        *,
        http_client: httpx.AsyncClient | None = None,
        cookie_secrets: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            check_console_client(settings, people)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        self._settings = settings
        self._people = people
        self._authenticator = authenticator
        self._owns_client = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=_HTTP_TIMEOUT_SECONDS, follow_redirects=False)
        self._cookie = SignInCookie(cookie_secrets, clock=clock)
        self._clock = clock
        self._endpoints: _Endpoints | None = None
        self._discovered_at = -math.inf
        self._discovery_lock = anyio.Lock()

    async def aclose(self) -> None:
        """Close the HTTP client if this sign-in created it."""
        if self._owns_client:
            await self._http.aclose()

    async def begin(self, request: Request, return_to: str) -> Response:
        """Send the browser to the provider to sign in; it comes back to the callback, which calls `finish`.

        `return_to` is where in the console to go once signed in: a path under `/ui`, else `/ui`.
        Raises `AuthenticationFailed` when the provider's discovery document cannot be read.
        """
        endpoints = await self._discover()
        pending = PendingSignIn(
            state=generate_token(32),
            nonce=generate_token(32),
            code_verifier=generate_token(64),
            redirect_uri=self._settings.redirect_url or str(request.base_url) + CALLBACK_PATH,
            return_to=console_path(return_to),
            started_at=self._clock(),
        )
        client = OAuth2Client(
            None,
            client_id=self._settings.client_id,
            scope=list(self._settings.scopes),
            redirect_uri=pending.redirect_uri,
            code_challenge_method="S256",
        )
        url, _ = client.create_authorization_url(
            endpoints.authorization, state=pending.state, code_verifier=pending.code_verifier, nonce=pending.nonce
        )
        response = RedirectResponse(str(url), status_code=302, headers={"Cache-Control": "no-store"})
        response.set_cookie(
            COOKIE_NAME,
            self._cookie.seal(pending),
            max_age=SIGN_IN_SECONDS,
            path="/",
            secure=not is_loopback_host(request.url.hostname or ""),
            httponly=True,
            samesite="lax",
        )
        return response

    async def finish(self, request: Request) -> tuple[User, str]:
        """The person who signed in at the provider, and where in the console they go now.

        Raises `AuthenticationFailed` saying why for anything else: a sign-in this browser did not
        start here, one the person cancelled or the provider refused, a code the provider does not
        redeem, an ID token that is not a person's, or one issued for another sign-in. The caller
        clears the cookie with `forget` on whatever it answers.
        """
        try:
            return await self._finish(request)
        except AuthenticationFailed as error:
            logger.info("console sign-in refused", extra={"reason": str(error)})
            raise

    @property
    def label(self) -> str:
        """What the sign-in page's button says (`[console.oidc] label`)."""
        return self._settings.label

    def forget(self, response: Response) -> None:
        """Clear the sign-in cookie on `response`: a sign-in finishes once, whether it succeeded or not."""
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="lax")

    async def _finish(self, request: Request) -> tuple[User, str]:
        pending = self._cookie.open(request.cookies.get(COOKIE_NAME))
        if pending is None:
            raise AuthenticationFailed(START_AGAIN + _https_hint(request))
        answer = request.query_params
        state = answer.get("state")
        if state is None or not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise AuthenticationFailed(
                "this answer from the identity provider is not for the sign-in started in this browser "
                "(its state does not match); start again"
            )
        issuer = answer.get("iss")
        if issuer is not None and issuer != self._people.issuer:
            # RFC 9207: an answer naming another issuer was sent by, or for, another provider.
            raise AuthenticationFailed(
                f"this answer comes from the identity provider {_provider_text(issuer)!r}, not the one this gateway "
                "signs people in with; start again"
            )
        error = answer.get("error")
        if error is not None:
            raise AuthenticationFailed(_refusal(error, answer.get("error_description")))
        code = answer.get("code")
        if not code:
            raise AuthenticationFailed("the identity provider sent no sign-in code back; start again")
        id_token = await self._redeem(code, pending)
        return await self._person(id_token, pending), pending.return_to

    async def _redeem(self, code: str, pending: PendingSignIn) -> str:
        """The ID token the provider gives for `code`, proving with the PKCE verifier that this console asked."""
        endpoints = await self._discover()
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=pending.redirect_uri, code_verifier=pending.code_verifier
        )
        secret = self._settings.client_secret
        auth = ClientAuth(
            self._settings.client_id, secret.get_secret_value() if secret else None, endpoints.client_auth_method
        )
        url, headers, content = auth.prepare("POST", endpoints.token, dict(_TOKEN_REQUEST_HEADERS), body)
        try:
            response = await self._http.post(str(url), content=str(content).encode(), headers=headers)
        except httpx.HTTPError as error:
            logger.warning("cannot reach the token endpoint", extra={"url": endpoints.token, "error": repr(error)})
            raise AuthenticationFailed(
                "the identity provider could not be reached to finish the sign-in; try again"
            ) from None
        answer = _json_object(response)
        if response.status_code != 200 or answer is None:
            raise AuthenticationFailed(
                self._token_refusal(response.status_code, answer, secrets=(code, pending.code_verifier))
            )
        id_token = answer.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise AuthenticationFailed(
                "the identity provider returned no ID token, so it does not say who signed in: the console's "
                "client must be allowed the 'openid' scope there"
            )
        return id_token

    def _token_refusal(self, status: int, answer: Mapping[str, Any] | None, *, secrets: Sequence[str]) -> str:
        error = answer.get("error") if answer is not None else None
        if not isinstance(error, str):
            logger.warning("the token endpoint failed", extra={"status": status})
            return f"the identity provider failed to finish the sign-in (HTTP {status}); try again later"
        description = answer.get("error_description") if answer is not None else None
        said = _provider_said(error, description, secrets=secrets)
        if error == "invalid_grant":
            return (
                "the identity provider refused the sign-in code: it was already used, has expired, or belongs to "
                f"another sign-in ({said}); start again"
            )
        if error in ("invalid_client", "unauthorized_client"):
            logger.warning("the identity provider refuses the console's client", extra={"error": said})
            return (
                f"the identity provider does not accept this gateway's console as a client ({said}); "
                "ask the gateway's administrator to check [console.oidc] client_id and client_secret"
            )
        return f"the identity provider refused to finish the sign-in ({said}); start again"

    async def _person(self, id_token: str, pending: PendingSignIn) -> User:
        """The person the ID token names, verified as a person's token and bound to this client and sign-in."""
        if not looks_like_jwt(id_token):
            # Anything else would be taken for a user key by the authenticator.
            raise AuthenticationFailed("the identity provider's ID token is not a JWT")
        try:
            user = await self._authenticator.authenticate(id_token)
        except AuthenticationFailed as error:
            raise AuthenticationFailed(f"the identity provider's ID token was refused: {error}") from None
        claims = token_claims(parse_token(id_token))  # verified by the authenticator just now
        client_id = self._settings.client_id
        if client_id not in audiences_of(claims) or claims.get("azp", client_id) != client_id:
            raise AuthenticationFailed(
                "the identity provider's ID token was issued to another client, not this gateway's console "
                f"({client_id!r}); start again"
            )
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), pending.nonce.encode()):
            raise AuthenticationFailed(
                "the identity provider's ID token was not issued for this sign-in (its nonce does not match); "
                "start again"
            )
        return user

    async def _discover(self) -> _Endpoints:
        """The provider's endpoints, from its discovery document, read again every `DISCOVERY_CACHE_SECONDS`."""
        if self._endpoints is not None and self._clock() - self._discovered_at < DISCOVERY_CACHE_SECONDS:
            return self._endpoints
        async with self._discovery_lock:
            if self._endpoints is not None and self._clock() - self._discovered_at < DISCOVERY_CACHE_SECONDS:
                return self._endpoints
            url = self._people.discovery_url
            try:
                endpoints = self._endpoints_in(await fetch_json_object(self._http, url))
            except IssuerDocumentUnavailable as error:
                logger.warning("cannot read the identity provider's discovery document", extra={"error": str(error)})
                if self._endpoints is not None:
                    return self._endpoints  # the provider's endpoints rarely move; keep signing people in
                raise AuthenticationFailed(
                    "the identity provider could not be reached to sign you in; try again later"
                ) from None
            self._endpoints, self._discovered_at = endpoints, self._clock()
            return endpoints

    def _endpoints_in(self, document: Mapping[str, Any]) -> _Endpoints:
        url = self._people.discovery_url
        if document.get("issuer") != self._people.issuer:
            # OpenID Connect Discovery 1.0, section 4.3: the document must name the same issuer.
            raise IssuerDocumentUnavailable(
                f"{url} names issuer {document.get('issuer')!r}, not {self._people.issuer!r}"
            )
        challenges = document.get("code_challenge_methods_supported")
        if isinstance(challenges, list) and "S256" not in challenges:
            raise IssuerDocumentUnavailable(f"{url}: the provider does not support PKCE with S256, which sign-in needs")
        return _Endpoints(
            authorization=_endpoint(document, "authorization_endpoint", url),
            token=_endpoint(document, "token_endpoint", url),
            client_auth_method=self._client_auth_method(document, url),
        )

    def _client_auth_method(self, document: Mapping[str, Any], url: str) -> str:
        if self._settings.client_secret is None:
            return "none"
        # OpenID Connect Discovery 1.0: a provider that lists no methods takes client_secret_basic.
        supported = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        for method in ("client_secret_basic", "client_secret_post"):
            if method in supported:
                return method
        raise IssuerDocumentUnavailable(f"{url}: the token endpoint takes no client secret ({supported!r})")


def console_path(return_to: str | None) -> str:
    """`return_to` if it is a path of the console (`/ui`, `/ui/...`, with a query), else `/ui`.

    Anything that could leave the console is refused: another origin (`https://...`, `//host`,
    `/\\host`, which browsers read as `//host`), a path outside `/ui` (`/uix`, `/ui/../api`, the
    dots percent-encoded or not), and control characters.
    """
    if not return_to or len(return_to) > _MAX_RETURN_TO_CHARS:
        return CONSOLE_HOME
    if any(character < " " or character in "\\\x7f" for character in return_to):
        return CONSOLE_HOME
    parts = urlsplit(return_to)
    if parts.scheme or parts.netloc:
        return CONSOLE_HOME
    if parts.path != CONSOLE_HOME and not parts.path.startswith(CONSOLE_HOME + "/"):
        return CONSOLE_HOME
    if any(segment in (".", "..") for segment in unquote(parts.path).split("/")):
        return CONSOLE_HOME
    return urlunsplit(("", "", parts.path, parts.query, ""))


def _endpoint(document: Mapping[str, Any], name: str, url: str) -> str:
    """An endpoint the discovery document names, refused unless people's browsers and secrets are safe there."""
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise IssuerDocumentUnavailable(f"{url} has no {name!r}")
    try:
        parsed = httpx.URL(value)
    except httpx.InvalidURL:
        raise IssuerDocumentUnavailable(f"{url}: {name} {value!r} is not a URL") from None
    if not (parsed.scheme == "https" and parsed.host) and not (
        parsed.scheme == "http" and is_loopback_host(parsed.host)
    ):
        raise IssuerDocumentUnavailable(f"{url}: {name} {value!r} must be https:// (plain http only for localhost)")
    return value


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        document = response.json()
    except ValueError:
        return None
    return cast(dict[str, Any], document) if isinstance(document, dict) else None


def _refusal(error: str, description: str | None) -> str:
    """What a person is told when the provider sends them back with an error instead of a code."""
    said = _provider_said(error, description)
    if error == "access_denied":
        return f"the sign-in was cancelled, or the identity provider refused it ({said}); start again to sign in"
    return f"the identity provider did not sign you in ({said}); start again, or ask your administrator"


def _provider_said(error: str, description: object, *, secrets: Sequence[str] = ()) -> str:
    """The provider's error and its description, as printable text of bounded length, with no secret in it."""
    said = error + (": " + description if isinstance(description, str) and description else "")
    for secret in secrets:
        said = said.replace(secret, "[redacted]")
    return _provider_text(said)


def _provider_text(text: str) -> str:
    printable = "".join(character if character.isprintable() else " " for character in text)
    return " ".join(printable.split())[:_MAX_PROVIDER_TEXT]


def _https_hint(request: Request) -> str:
    """Why a browser may have dropped the cookie: it keeps Secure cookies only over https, except on localhost."""
    if request.url.scheme == "http" and not is_loopback_host(request.url.hostname or ""):
        return " (the console must be served over https for sign-in to work)"
    return ""
