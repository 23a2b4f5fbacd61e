"""`gateway stdio`: MCP on stdin/stdout, for a local client that starts the gateway itself.

There is no HTTP request to carry a bearer token, so the API key is given once, up front, and
every request acts as that key's agent.
"""

from __future__ import annotations

import argparse
import os
import sys

import anyio

from gateway.cli.config_option import add_config_argument, load
from gateway.errors import GatewayError


def build(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--key", default=os.environ.get("GATEWAY_KEY"), help="API key (default: $GATEWAY_KEY)")
    parser.set_defaults(run=_stdio)


def _stdio(args: argparse.Namespace) -> int:
    from mcp.server.stdio import stdio_server

    from gateway.front.server import build_server
    from gateway.runtime import GatewayRuntime

    if not args.key:
        print("gateway: stdio needs an API key: pass --key or set GATEWAY_KEY", file=sys.stderr)
        return 2
    config = load(args)
    runtime = GatewayRuntime(config)

    async def serve() -> int:
        # Refuse a bad key before any backend is started.
        await runtime.database.migrate()
        try:
            principal = await runtime.authenticator.authenticate(args.key)
        except GatewayError:
            await runtime.database.close()
            raise
        # Over stdio a session-based client hears no `list_changed`: it gets the backends' first listings up front.
        async with runtime.running(migrate=False, wait_for_backends=True):
            server = build_server(runtime.pipeline, runtime.notifier, default_principal=principal)
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())
        return 0

    return anyio.run(serve)
