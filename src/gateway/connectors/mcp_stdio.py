"""Transport for `kind = "mcp-stdio"`: the gateway starts the backend as its own subprocess."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from mcp.client._transport import TransportStreams
from mcp.client.stdio import StdioServerParameters, stdio_client

from gateway.config import McpStdioConnector


def stdio_transport_factory(settings: McpStdioConnector) -> AbstractAsyncContextManager[TransportStreams]:
    """A fresh subprocess per connection attempt; secrets from `env` reach only the child's environment."""
    parameters = StdioServerParameters(
        command=settings.command[0],
        args=list(settings.command[1:]),
        env={key: value.get_secret_value() for key, value in settings.env.items()},
        cwd=settings.cwd,
    )
    return stdio_client(parameters)
