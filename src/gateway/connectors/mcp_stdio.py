"""Link for `kind = "mcp-stdio"`: the gateway starts the backend as its own subprocess."""

from __future__ import annotations

from collections.abc import Callable

from gateway.connectors.stdio_pipe import StdioPipe
from gateway.settings.connectors import McpStdioConnector


def stdio_link(
    settings: McpStdioConnector, on_lost: Callable[[str], None], _on_list_changed: Callable[[], None]
) -> StdioPipe:
    """A fresh subprocess per connection attempt; secrets from `env` reach only the child's environment.

    Change notifications need no hook here: the pipe hands them to the SDK session, which reports them.
    """
    return StdioPipe(settings, on_lost)
