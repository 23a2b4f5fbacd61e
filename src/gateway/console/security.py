"""The console's browser-facing defences, in one place: headers, cookies and CSRF.

- Every response carries a strict Content-Security-Policy (scripts and styles only from the
  gateway's own `/ui/static`, nothing inline, no framing), `nosniff`, and no referrer leaking
  a page's address elsewhere.
- The session cookie is HttpOnly, SameSite=Strict, scoped to `/ui`, and Secure unless the
  console is served on the loopback interface over plain HTTP (a developer's machine).
- Every write carries the session's CSRF token (a hidden form field, or the `X-CSRF-Token`
  header from the console's script), compared in constant time; a request whose `Origin` is
  another site's is refused before that.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "gateway_console"
#: The CSRF token of the sign-in form, before there is a session to keep it in (double-submit).
LOGIN_COOKIE = "gateway_console_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
COOKIE_PATH = "/ui"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
)


class SecurityHeaders:
    """Adds the console's headers to every response of the wrapped app (pages, fragments, static files)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        static = scope.get("path", "").startswith(f"{COOKIE_PATH}/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                added = [(n, v) for n, v in _HEADERS if n not in names and not (static and n == b"cache-control")]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self._app(scope, receive, with_headers)


def secure_cookies(request: Request) -> bool:
    """Cookies are Secure unless the console is reached over plain HTTP on the loopback interface."""
    if request.url.scheme == "https":
        return True
    host = request.url.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def set_session_cookie(response: Response, request: Request, secret: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        secure=secure_cookies(request),
        samesite="strict",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path=COOKIE_PATH, httponly=True, secure=secure_cookies(request), samesite="strict"
    )


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site (`Origin` or `Sec-Fetch-Site`)."""
    if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return origin == f"{request.url.scheme}://{request.url.netloc}"


def tokens_match(presented: str | None, expected: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())
