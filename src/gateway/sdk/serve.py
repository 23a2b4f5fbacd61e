"""`python -m gateway.sdk.serve TARGET`: one Python connector as an MCP server over stdio.

This is `isolation = "subprocess"`: the gateway runs this host as a child process and reaches it
with its MCP stdio connector, so a connector that crashes, leaks or blocks takes down only its
own process, and supervision, restarts, timeouts and cancellation are the ones every stdio
backend has. The connector file's `settings` arrive as JSON in `GATEWAY_CONNECTOR_SETTINGS`
(the environment, like any stdio backend's secrets), `path` in `GATEWAY_CONNECTOR_PATH`.

A connector that raises in `on_start` makes this process print why on stderr and exit 1, which
the gateway reports on `/readyz` and retries with backoff.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from gateway.sdk.connector import Connector
from gateway.sdk.loading import load

SETTINGS_VARIABLE = "GATEWAY_CONNECTOR_SETTINGS"
PATH_VARIABLE = "GATEWAY_CONNECTOR_PATH"


def mcp_server(connector: Connector[Any], settings: dict[str, Any]) -> Server[None]:
    """An MCP server whose tools are the connector's, started and closed with the server."""

    @asynccontextmanager
    async def lifespan(_: Server[None]) -> AsyncIterator[None]:
        await connector.start(settings)
        try:
            yield None
        finally:
            await connector.close()

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult.model_validate({"tools": connector.definitions()})

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        result = await connector.call(params.name, params.arguments)
        return types.CallToolResult.model_validate(result)

    return Server(connector.name, lifespan=lifespan, on_list_tools=list_tools, on_call_tool=call_tool)


async def serve(target: str) -> None:
    path = [Path(p) for p in os.environ.get(PATH_VARIABLE, "").split(os.pathsep) if p]
    connector = load(target, path=path)
    settings = json.loads(os.environ.get(SETTINGS_VARIABLE) or "{}")
    server = mcp_server(connector, settings)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m gateway.sdk.serve ENTRY_POINT|module:attribute", file=sys.stderr)
        return 2
    try:
        anyio.run(serve, args[0])
    except Exception as exc:  # the one line the gateway's stdio connector shows on /readyz
        print(f"connector {args[0]!r} failed: {_reason(exc)}", file=sys.stderr)
        return 1
    return 0


def _reason(error: BaseException) -> str:
    """The author's exception, not the task groups of the MCP server that wrap what `on_start` raised."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(_reason(inner) for inner in error.exceptions)
    return f"{type(error).__name__}: {error}"


if __name__ == "__main__":
    sys.exit(main())
