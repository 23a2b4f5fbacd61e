"""A backend whose tool declares an `x-mcp-header`: its `region` argument travels as `Mcp-Param-Region` too."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

server = MCPServer("routed", instructions="Test backend with a routing header.")


@server.tool()
def store(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], text: str) -> str:
    """Store the text in the region's shard."""
    return f"{region}:{text}"


@server.tool()
def plain(text: str) -> str:
    """Declares no header."""
    return text


if __name__ == "__main__":
    server.run()
