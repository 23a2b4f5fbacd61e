"""One REST API's calls: a pooled client, the connector's credentials, retries, redirects and size bounds.

Why each rule:
- **One pooled `httpx.AsyncClient` per connector**: a call costs a request on a kept-alive
  connection, not a TCP and TLS handshake.
- **Retries only for idempotent methods** (GET, HEAD, PUT, DELETE, OPTIONS), on connection
  errors and 429/502/503/504, with exponential backoff and full jitter, honouring `Retry-After`
  up to `max_retry_after`: repeating a POST could create the order twice.
- **A 401 with OAuth client credentials** renews the token once and repeats the request once
  (whatever the method: the API refused it unread).
- **Redirects only to the same origin**: the connector's credentials must never follow a
  redirect to another host.
- **The body is streamed and cut at `max_response_bytes`** (decompressed bytes, so a small
  gzip bomb counts as what it inflates to); nothing of a cut body is parsed.
- The call's `timeout` bounds everything (retries, waits and a body that trickles in); the
  connector wraps the call in it. `connect_timeout` bounds each connection attempt.
"""

from __future__ import annotations

import email.utils
import logging
import random
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx

from gateway.connectors.base import JsonObject
from gateway.connectors.openapi.credentials import Credentials
from gateway.connectors.openapi.operations import Operation
from gateway.connectors.openapi.request_building import build_request
from gateway.connectors.openapi.results import tool_error, tool_result
from gateway.errors import BackendUnavailable, ConfigError
from gateway.settings.openapi_http import BackendAuth, BackendTls, RetryPolicy

logger = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
#: Connections kept open to one API: enough for a busy agent fleet, few enough to be polite.
_MAX_CONNECTIONS = 64


@dataclass(frozen=True, slots=True)
class Answer:
    """The last word from the API, for health: an HTTP status, or why none came."""

    status: int | None
    problem: str = ""
    at: float = 0.0


class _TooLarge(Exception):
    def __init__(self, size: int | None) -> None:
        self.size = size


class ApiClient:
    """Calls one REST API for one connector; the connector owns its lifetime (`aclose`)."""

    def __init__(
        self,
        connector: str,
        base_url: str,
        *,
        auth: BackendAuth | None,
        tls: BackendTls,
        retries: RetryPolicy,
        max_response_bytes: int,
        timeout: float,
        connect_timeout: float,
        files_relative_to: Path,
    ) -> None:
        self._connector = connector
        self._base_url = base_url
        self._origin = _origin(httpx.URL(base_url))
        self._retries = retries
        self._max_bytes = max_response_bytes
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=_MAX_CONNECTIONS, max_keepalive_connections=_MAX_CONNECTIONS),
            follow_redirects=False,
            verify=tls_context(connector, tls, files_relative_to),
            trust_env=False,
        )
        self._credentials = Credentials(auth, self._client, connector)
        self.last_answer: Answer | None = None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def probe(self) -> Answer:
        """Whether the API answers at all: any HTTP status counts, only a failed connection does not."""
        try:
            response = await self._client.request("HEAD", self._base_url)
            await response.aclose()
            answer = Answer(response.status_code, at=time.monotonic())
        except httpx.HTTPError as exc:
            answer = Answer(None, _transport_problem(exc), time.monotonic())
        self.last_answer = answer
        return answer

    async def call(self, operation: Operation, arguments: JsonObject, *, declared_output: bool) -> JsonObject:
        request = build_request(self._client, self._base_url, operation, arguments)
        idempotent = operation.method in IDEMPOTENT_METHODS
        attempts = self._retries.attempts if idempotent else 1
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                status, content_type, headers, body = await self._exchange(request)
            except _TooLarge as exc:
                self.last_answer = Answer(200, at=time.monotonic())
                size = f" ({exc.size} bytes)" if exc.size is not None else ""
                return tool_error(
                    f"The API's answer{size} is larger than this connector's max_response_bytes "
                    f"({self._max_bytes} bytes), so it was not read. Ask for less (a smaller page or a filter)."
                )
            except _CrossOrigin as exc:
                self.last_answer = Answer(exc.status, at=time.monotonic())
                return tool_error(
                    f"The API redirected the call to another origin ({exc.target}); the gateway follows redirects "
                    "only within the API's own origin, so it was not followed. An operator should check base_url."
                )
            except httpx.TransportError as exc:
                problem = _transport_problem(exc)
                self.last_answer = Answer(None, problem, time.monotonic())
                if attempt < attempts:
                    await self._pause(attempt, None)
                    continue
                tried = f" (tried {attempt} times)" if attempt > 1 else ""
                raise BackendUnavailable(
                    f"the API of connector '{self._connector}' could not be reached: {problem}{tried}; retry shortly"
                ) from None
            self.last_answer = Answer(status, at=time.monotonic())
            if status == 401 and self._credentials.renewable and not renewed:
                renewed = True  # `_exchange` marked the token stale: this attempt goes out with a new one
                attempt -= 1
                continue
            if status in RETRIED_STATUSES and attempt < attempts:
                wait = _retry_after(headers.get("Retry-After"))
                if wait is None or wait <= self._retries.max_retry_after:
                    logger.info(
                        "retrying API call",
                        extra={"connector": self._connector, "status": status, "attempt": attempt},
                    )
                    await self._pause(attempt, wait)
                    continue
            return tool_result(status, content_type, body, declared_output=declared_output)

    async def _pause(self, attempt: int, retry_after: float | None) -> None:
        if retry_after is not None:
            await anyio.sleep(retry_after)
            return
        ceiling = min(self._retries.initial_backoff * 2 ** (attempt - 1), self._retries.max_backoff)
        await anyio.sleep(random.uniform(ceiling / 2, ceiling))

    async def _exchange(self, request: httpx.Request) -> tuple[int, str, httpx.Headers, bytes]:
        """Send with credentials, follow same-origin redirects, read the body within the bound."""
        current = request
        for _ in range(_MAX_REDIRECTS + 1):
            outgoing = _copy(current)
            await self._credentials.apply(outgoing)
            response = await self._client.send(outgoing, stream=True)
            try:
                if response.status_code in _REDIRECTS and "Location" in response.headers:
                    target = outgoing.url.join(response.headers["Location"])
                    if _origin(target) != self._origin:
                        raise _CrossOrigin(response.status_code, str(target.copy_with(query=None)))
                    current = _redirected(current, response.status_code, target)
                    continue
                if response.status_code == 401:
                    self._credentials.rejected(outgoing)
                body = await self._bounded_body(response)
                return response.status_code, response.headers.get("Content-Type", ""), response.headers, body
            finally:
                await response.aclose()
        return 508, "text/plain", httpx.Headers(), f"more than {_MAX_REDIRECTS} redirects".encode()

    async def _bounded_body(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
            raise _TooLarge(int(declared))
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_bytes:
                raise _TooLarge(None)
            chunks.append(chunk)
        return b"".join(chunks)


class _CrossOrigin(Exception):
    def __init__(self, status: int, target: str) -> None:
        self.status = status
        self.target = target


def _copy(request: httpx.Request) -> httpx.Request:
    """A fresh request to send: credentials are put on each attempt (a token may have been renewed)."""
    return httpx.Request(request.method, request.url, headers=request.headers.copy(), content=request.content)


def _redirected(request: httpx.Request, status: int, target: httpx.URL) -> httpx.Request:
    """The request a redirect asks for: 303 (and 301/302 after a POST) become a GET without body."""
    method = request.method
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        headers = request.headers.copy()
        headers.pop("Content-Type", None)
        headers.pop("Content-Length", None)
        return httpx.Request("GET", target, headers=headers)
    return httpx.Request(method, target, headers=request.headers.copy(), content=request.content)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def _retry_after(value: str | None) -> float | None:
    """Seconds a `Retry-After` asks for (delta-seconds or an HTTP date); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _transport_problem(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "the connection attempt timed out"
    if isinstance(exc, httpx.ConnectError):
        return f"the connection failed ({exc})"
    if isinstance(exc, httpx.TimeoutException):
        return "the API stopped answering mid-request"
    return f"{exc.__class__.__name__}: {exc}"[:300]


def tls_context(connector: str, tls: BackendTls, base: Path) -> ssl.SSLContext:
    """The TLS settings of the connector's requests; a missing or unreadable file is refused naming it."""
    ca = base / tls.ca_bundle if tls.ca_bundle is not None else None
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"connector '{connector}': ca_bundle {ca} cannot be read as PEM CA certificates ({exc})"
        ) from None
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.client_cert is not None:
        cert = base / tls.client_cert
        key = base / tls.client_key if tls.client_key is not None else None
        try:
            context.load_cert_chain(str(cert), str(key) if key else None)
        except (OSError, ssl.SSLError) as exc:
            files = f"{cert} and {key}" if key else str(cert)
            raise ConfigError(
                f"connector '{connector}': client_cert/client_key {files} cannot be loaded as a PEM certificate "
                f"and its private key ({exc})"
            ) from None
    return context
