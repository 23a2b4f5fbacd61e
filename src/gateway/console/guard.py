"""Every console route passes here first: who is signed in, whether they may, and whether a write is theirs.

`Guard.page(permission, handler)` turns `handler(request, visitor)` into a route endpoint that
- sends a visitor with no live session to the sign-in page (a page) or answers 401 (a fragment
  or event stream the script asked for), so an expired session is never a broken page;
- answers 403 with a page that says which permission is missing;
- refuses a write (any method but GET and HEAD) that comes from another site or lacks the
  session's CSRF token, before the handler runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from gateway.console.access import Permission, Visitor, permissions_of
from gateway.console.rendering import render
from gateway.console.security import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, same_origin, tokens_match
from gateway.console.services import ConsoleServices

Handler = Callable[[Request, Visitor], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]

STALE_FORM = (
    "This form was refused: it did not carry this session's security token, or it came from another site. "
    "Reload the page and try again."
)


class Guard:
    def __init__(self, services: ConsoleServices) -> None:
        self._services = services

    async def visitor(self, request: Request) -> Visitor | None:
        """The signed-in person behind `request`, or None; a disabled local user has no session any more."""
        secret = request.cookies.get(SESSION_COOKIE)
        if not secret:
            return None
        session = await self._services.sessions.find(secret, touch=wants_page(request))
        if session is None:
            return None
        if await self._disabled(session.user.name, known_locally=session.via == "key"):
            await self._services.sessions.close(secret)
            return None
        return Visitor(session, permissions_of(session.user.roles, self._services.settings))

    async def _disabled(self, name: str, *, known_locally: bool) -> bool:
        """Whether the person may no longer be signed in: their local user is disabled (or gone, for a key's)."""
        try:
            return (await self._services.users.get(name)).disabled
        except LookupError:
            return known_locally  # a person only the identity provider knows has no local row to disable

    def page(self, permission: Permission, handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            visitor = await self.visitor(request)
            if visitor is None:
                return signed_out(request)
            if not visitor.may(permission):
                return render(
                    request,
                    "forbidden.html",
                    {"permission": permission.value},
                    visitor=visitor,
                    status_code=403,
                )
            if request.method not in ("GET", "HEAD") and not await _write_is_theirs(request, visitor):
                return render(request, "forbidden.html", {"message": STALE_FORM}, visitor=visitor, status_code=403)
            return await handler(request, visitor)

        return endpoint


def wants_page(request: Request) -> bool:
    """A browser navigating (a page), rather than the console's script fetching a fragment or a stream."""
    return request.headers.get("x-requested-with") != "console" and "text/event-stream" not in request.headers.get(
        "accept", ""
    )


def signed_out(request: Request) -> Response:
    if not wants_page(request) or request.method not in ("GET", "HEAD"):
        return PlainTextResponse("Your console session has ended: sign in again.", status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)


async def _write_is_theirs(request: Request, visitor: Visitor) -> bool:
    if not same_origin(request):
        return False
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        field = form.get(CSRF_FIELD)
        presented = field if isinstance(field, str) else None
    return tokens_match(presented, visitor.session.csrf_token)
