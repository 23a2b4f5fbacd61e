"""HTTP authentication in front of `/mcp`: no request reaches the MCP layer unauthenticated.

A missing, unknown, revoked, expired or forged credential gets 401 with a
`WWW-Authenticate: Bearer` challenge before any body is read or any backend is touched.
A credential that cannot be checked because the database is down gets 503 with `Retry-After`:
the caller did nothing wrong and should retry, and the outage is logged once per
`OUTAGE_LOG_INTERVAL_SECONDS`, not once per request, so a burst of agents does not bury the log.
The authenticated principal is put in the ASGI scope for the pipeline, and also as the
SDK's `AuthenticatedUser`, so the SDK binds each session to the credential that opened it
(another agent's key cannot ride someone else's session id).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import orjson
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from opentelemetry import context as otel_context
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import AuthenticationFailed, StorageUnavailable
from gateway.identity.principal import Principal
from gateway.telemetry.propagation import extract_context

logger = logging.getLogger(__name__)

PRINCIPAL_SCOPE_KEY = "gateway.principal"

#: What a caller is told to wait before retrying while credentials cannot be checked: long enough
#: not to hammer a recovering database, short enough for an agent to wait it out.
RETRY_AFTER_SECONDS = 5
OUTAGE_LOG_INTERVAL_SECONDS = 30.0
STORAGE_DOWN = (
    "Service unavailable: the gateway cannot check credentials because its database is unreachable; "
    f"retry in {RETRY_AFTER_SECONDS} seconds\n"
)


class Authenticator(Protocol):
    async def authenticate(self, presented: str) -> Principal: ...


RefusalRecorder = Callable[[str, str | None, str], Awaitable[None]]
"""Told of every refused request: (reason, client address, path). Never sees the credential."""


def bearer_credential(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The credential of an `Authorization: Bearer` header, or None."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credential = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credential.strip():
                return credential.strip()
            return None
    return None


async def authenticate_request(request: Request, authenticator: Authenticator) -> Principal:
    """For JSON API routes: the request's principal, or AuthenticationFailed."""
    credential = bearer_credential(request.scope["headers"])
    if credential is None:
        raise AuthenticationFailed("missing bearer credential: send 'Authorization: Bearer <key>'")
    return await authenticator.authenticate(credential)


class _OutageLog:
    """Logs a storage outage seen while authenticating at most once per `interval` seconds.

    Every request fails the same way while the database is down; one line per window, counting the
    requests answered 503 since the previous one, says as much as a line per request would.
    """

    def __init__(
        self, interval: float = OUTAGE_LOG_INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._logged_at = -math.inf
        self._unlogged = 0

    def record(self, error: StorageUnavailable) -> None:
        now = self._clock()
        if now - self._logged_at < self._interval:
            self._unlogged += 1
            return
        logger.error(
            "cannot check credentials: storage unavailable; answering 503",
            extra={"error": str(error), "unavailable_answers_since_last_log": self._unlogged},
        )
        self._logged_at = now
        self._unlogged = 0


class BearerAuthentication:
    """ASGI middleware: authenticate the bearer credential, or answer 401 (or 503) and stop."""

    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator,
        *,
        realm: str = "autonomy-gateway",
        resource_metadata_url: str | None = None,
        on_refused: RefusalRecorder | None = None,
    ) -> None:
        self._app = app
        self._authenticator = authenticator
        self._on_refused = on_refused
        self._realm = realm
        self._resource_metadata = f', resource_metadata="{resource_metadata_url}"' if resource_metadata_url else ""
        self._outage_log = _OutageLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        credential = bearer_credential(scope["headers"])
        try:
            if credential is None:
                raise AuthenticationFailed("missing bearer credential: send 'Authorization: Bearer <key>'")
            principal = await self._authenticator.authenticate(credential)
        except AuthenticationFailed as exc:
            client = scope.get("client")
            logger.warning(
                "authentication refused",
                extra={"reason": str(exc), "client_address": client[0] if client else None, "path": scope["path"]},
            )
            if self._on_refused is not None:
                await self._on_refused(str(exc), client[0] if client else None, scope["path"])
            await self._refuse(send, str(exc))
            return
        except StorageUnavailable as exc:
            self._outage_log.record(exc)
            await self._unavailable(send)
            return
        scope[PRINCIPAL_SCOPE_KEY] = principal
        trace_context = _header_trace_context(scope["headers"])
        scope["user"] = AuthenticatedUser(
            AccessToken(
                token=principal.credential_id or "",
                client_id=principal.agent,
                subject=principal.user,
                scopes=list(principal.scopes),
            )
        )
        if trace_context is None:
            await self._app(scope, receive, send)
            return
        # A caller's `traceparent` header becomes the current context, so the request's spans join
        # the caller's trace when its `_meta` carries none (the `_meta` one wins when both are sent).
        token = otel_context.attach(trace_context)
        try:
            await self._app(scope, receive, send)
        finally:
            otel_context.detach(token)

    async def _refuse(self, send: Send, reason: str) -> None:
        quoted = reason.replace("\\", "\\\\").replace('"', "'")
        challenge = (
            f'Bearer realm="{self._realm}"{self._resource_metadata}, '
            f'error="invalid_token", error_description="{quoted}"'
        )
        body = orjson.dumps({"error": "invalid_token", "error_description": reason})
        await _respond(send, 401, b"application/json", body, (b"www-authenticate", challenge.encode()))

    @staticmethod
    async def _unavailable(send: Send) -> None:
        retry_after = (b"retry-after", str(RETRY_AFTER_SECONDS).encode())
        await _respond(send, 503, b"text/plain; charset=utf-8", STORAGE_DOWN.encode(), retry_after)


async def _respond(send: Send, status: int, content_type: bytes, body: bytes, *headers: tuple[bytes, bytes]) -> None:
    """A whole response sent from the door, before the app: nothing behind it has run."""
    start_headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


def _header_trace_context(headers: Iterable[tuple[bytes, bytes]]) -> otel_context.Context | None:
    carrier = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in headers
        if name in (b"traceparent", b"tracestate")
    }
    return extract_context(None, carrier) if carrier else None
