"""What the console answers when no page does: an unknown address, or a request refused before any page saw it.

Both are console pages (the layout, the person's name, a way back) rather than the framework's
plain text, so a mistyped link or an oversized form reads like the rest of the console.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.console.guard import Guard
from gateway.console.rendering import render


def not_found(guard: Guard) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        visitor = await guard.visitor(request)
        page = render(request, "missing.html", {"what": "page in the console"}, visitor=visitor, status_code=404)
        await page(scope, receive, send)

    return app


def refused(guard: Guard) -> Callable[[Request, Exception], Awaitable[Response]]:
    """A form too large or a body that is not what it claims: the framework's refusal, said on a page."""

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = f"The request was refused: {exc.detail}"
        visitor = await guard.visitor(request)
        return render(request, "problem.html", {"message": message}, visitor=visitor, status_code=exc.status_code)

    return handler
