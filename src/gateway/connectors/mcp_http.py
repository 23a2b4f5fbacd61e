"""Link for `kind = "mcp-http"`: a remote MCP server over streamable HTTP.

The backend sees only the headers from its connector file, never the agent's token. Pooled
HTTP clients per connection keep requests on warm keep-alive connections.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.connectors.http_hop import HttpLink
from gateway.settings.connectors import McpHttpConnector


def http_link(
    settings: McpHttpConnector, on_lost: Callable[[str], None], on_list_changed: Callable[[], None]
) -> HttpLink:
    return HttpLink(settings, on_lost, on_list_changed)
