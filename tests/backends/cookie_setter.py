"""A streamable-HTTP backend whose every answer sets a cookie, and whose one tool says which cookies it was sent."""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

server = MCPServer("cookie-setter", instructions="Test backend that sets cookies.")


@server.tool()
def cookies(ctx: Context) -> dict[str, Any]:
    """The Cookie header this request carried."""
    request = ctx.request_context.request
    return {"cookie": request.headers.get("cookie") if request is not None else None}


class SetsCookie:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", b"sticky=one-agent")]}
            await send(message)

        await self.app(scope, receive, with_cookie)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(SetsCookie(server.streamable_http_app()), host="127.0.0.1", port=args.http, log_level="warning")


if __name__ == "__main__":
    main()
