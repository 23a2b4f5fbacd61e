"""Transport for `kind = "mcp-http"`: a remote MCP server over streamable HTTP.

The backend sees only the headers from its connector file, never the agent's token. One
pooled HTTP client per connection keeps requests on warm keep-alive connections.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
from mcp.client._transport import TransportStreams
from mcp.client.streamable_http import streamable_http_client

from gateway.config import McpHttpConnector


@asynccontextmanager
async def http_transport(settings: McpHttpConnector) -> AsyncIterator[TransportStreams]:
    headers = {key: value.get_secret_value() for key, value in settings.headers.items()}
    timeout = httpx2.Timeout(settings.connect_timeout, read=max(settings.timeout, 300.0))
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http_client:
        # Large results pass through whole: no per-event cap below the gateway's own limits.
        async with streamable_http_client(settings.url, http_client=http_client, max_sse_event_size=None) as streams:
            yield streams
