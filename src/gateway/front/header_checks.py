"""The header checks every `/mcp` request passes, answered from a few cached verdicts.

The SDK's checks (Content-Type, DNS-rebinding Host and Origin, Accept) parse the request's
headers into a Starlette `Headers` for each lookup. A client sends the same few values on every
request, so a verdict is kept per value seen: a request whose values all passed before is let
through after one scan of its headers. Anything else goes to the SDK's own check, which answers
a refusal exactly as it always did.
"""

from __future__ import annotations

from mcp.server.streamable_http import check_accept_headers
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from gateway.memo import remember

#: Distinct values remembered per header before the memory starts over (a client sends one or two).
_REMEMBERED = 256


class HeaderChecks:
    """Content-Type, Host and Origin (DNS rebinding), and Accept, as the SDK decides them."""

    def __init__(self, security: TransportSecuritySettings | None) -> None:
        self._sdk = TransportSecurityMiddleware(security)
        settings = self._sdk.settings
        self._rebinding = settings.enable_dns_rebinding_protection
        self._allowed_hosts = tuple(settings.allowed_hosts)
        self._allowed_origins = tuple(settings.allowed_origins)
        self._good_hosts: dict[bytes, bool] = {}
        self._good_origins: dict[bytes, bool] = {}
        self._accepts: dict[bytes, tuple[bool, bool]] = {}

    async def refusal(self, scope: Scope, receive: Receive, *, is_post: bool) -> Response | None:
        """None when the request may go on; else the response the SDK gives it."""
        if self._passes(scope, is_post):
            return None
        return await self._sdk.validate_request(Request(scope, receive), is_post=is_post)

    def accepts(self, scope: Scope) -> tuple[bool, bool]:
        """Whether the Accept header takes JSON, and SSE (wildcards as RFC 9110 has them)."""
        value = b""
        for name, header in scope["headers"]:
            if name == b"accept":
                value = header
                break
        verdict = self._accepts.get(value)
        if verdict is None:
            verdict = check_accept_headers(Request({"type": "http", "headers": [(b"accept", value)]}))
            remember(self._accepts, value, verdict, limit=_REMEMBERED)
        return verdict

    def _passes(self, scope: Scope, is_post: bool) -> bool:
        content_type = host = origin = None
        for name, value in scope["headers"]:
            # The first of each, as `Headers.get` reads them.
            if name == b"content-type":
                content_type = value if content_type is None else content_type
            elif name == b"host":
                host = value if host is None else host
            elif name == b"origin":
                origin = value if origin is None else origin
        if is_post and (content_type is None or not content_type.lower().startswith(b"application/json")):
            return False
        if not self._rebinding:
            return True
        if host is None or not self._known(host, self._good_hosts, self._allowed_hosts):
            return False
        return origin is None or not origin or self._known(origin, self._good_origins, self._allowed_origins)

    @staticmethod
    def _known(value: bytes, good: dict[bytes, bool], allowed: tuple[str, ...]) -> bool:
        if value in good:
            return True
        text = value.decode("latin-1")
        if not text or not any(_matches(text, entry) for entry in allowed):
            return False
        return remember(good, value, True, limit=_REMEMBERED)


def _matches(value: str, allowed: str) -> bool:
    """`allowed` exactly, or `host:*` for any port of that host."""
    return value == allowed or (allowed.endswith(":*") and value.startswith(allowed[:-1]))
