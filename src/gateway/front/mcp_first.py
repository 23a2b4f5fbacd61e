"""The app's entry: the MCP endpoint's requests skip Starlette's router and middleware.

Every agent request goes to one path. Through Starlette it passes its error and exception
middleware and the router, each wrapping `send` again: about 23 µs a request on these machines,
for an endpoint that is plain ASGI and answers its own errors. Here the MCP path goes straight
to its endpoint under the same last-resort guard (a 500 if the endpoint fails before answering,
and the error raised on to the server, which logs it); every other path, and the lifespan, is
Starlette's as before. A deployment under a `root_path` goes through the router, which knows
how to strip it.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SERVER_ERROR = b"Internal Server Error"


class McpFirstApp(Starlette):
    """A Starlette app whose MCP path is served before the router is asked."""

    def __init__(self, *, mcp_path: str, mcp_app: ASGIApp, **starlette: Any) -> None:
        super().__init__(**starlette)
        self._mcp_path = mcp_path
        self._mcp_app = mcp_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self._mcp_path or scope.get("root_path"):
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._mcp_app(scope, receive, tracked)
        except Exception:
            if not started:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(_SERVER_ERROR)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": _SERVER_ERROR})
            raise
