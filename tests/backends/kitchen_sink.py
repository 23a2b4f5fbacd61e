"""A test backend with every behaviour the gateway must carry through unchanged.

Runs over stdio by default or streamable HTTP with `--http PORT`; `--legacy-only` makes it
refuse the 2026-07-28 revision so tests can pair every client revision with every backend one.
`KITCHEN_SINK_INSTANCE` names this process in its resources' content, so tests running two of
them behind one gateway can tell which backend answered; `KITCHEN_SINK_SUBSCRIBE=1` makes it take
`resources/subscribe` at the session-based revisions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp_types import (
    CallToolResult,
    EmbeddedResource,
    EmptyResult,
    ResourceLink,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    ToolAnnotations,
    UnsubscribeRequestParams,
)

server = MCPServer("kitchen-sink", instructions="Test backend.")
_MARKER_DIR = Path(os.environ.get("KITCHEN_SINK_MARKERS", "."))
_INSTANCE = os.environ.get("KITCHEN_SINK_INSTANCE", "")


@server.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def add(a: int, b: int) -> dict[str, int]:
    """Add two integers; the result is structured content."""
    return {"sum": a + b}


@server.tool()
def rich() -> CallToolResult:
    """A result with every field a client may rely on: content kinds, structured content, _meta."""
    return CallToolResult(
        content=[
            TextContent(type="text", text="héllo ✓"),
            {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"},  # type: ignore[list-item]
        ],
        structured_content={"nested": {"list": [1, 2.5, None, True], "text": "x"}},
        _meta={"backend.example/trace": "abc"},
    )


@server.tool()
def fail_softly(reason: str) -> CallToolResult:
    """A tool error (isError) the model should see."""
    return CallToolResult(content=[TextContent(type="text", text=f"failed: {reason}")], is_error=True)


@server.tool()
async def slow(steps: int, ctx: Context) -> str:
    """Report progress `steps` times."""
    for step in range(steps):
        await ctx.report_progress(step + 1, steps, f"step {step + 1}")
        await anyio.sleep(0.01)
    return f"done after {steps} steps"


@server.tool()
async def hang(marker: str) -> str:
    """Never return; write `<marker>.started`, then `<marker>.cancelled` when cancelled, for tests to wait on."""
    (_MARKER_DIR / f"{marker}.started").write_text("started")
    try:
        await anyio.sleep(3600)
    except anyio.get_cancelled_exc_class():
        (_MARKER_DIR / f"{marker}.cancelled").write_text("cancelled")
        raise
    return "unreachable"


@server.tool()
def crash() -> str:
    """Kill this backend process mid-call."""
    os._exit(17)


@server.tool()
def big(size: int) -> str:
    """Return a text of `size` bytes."""
    return "x" * size


@server.tool()
def whoami(ctx: Context) -> dict[str, Any]:
    """Show what the backend received: the Authorization header and the process environment marker."""
    request = ctx.request_context.request
    headers = dict(request.headers) if request is not None else {}
    return {
        "authorization": headers.get("authorization"),
        "x_backend_token": headers.get("x-backend-token"),
        "env_marker": os.environ.get("KITCHEN_SINK_SECRET"),
        "pid": os.getpid(),
    }


@server.tool()
async def add_tool(name: str, ctx: Context) -> str:
    """Register a new tool at run time and announce it, as a backend whose offer changes does."""

    def dynamic() -> str:
        return f"I am {name}"

    server.add_tool(dynamic, name=name, description=f"Added at run time: {name}")
    # Session-based clients hear it on their session; 2026-07-28 clients on their listen stream.
    if ctx.request_context.session.protocol_version < "2026-07-28":
        await ctx.request_context.session.send_tool_list_changed()
    else:
        await ctx.notify_tools_changed()
    return f"added {name}"


@server.tool()
def show_arguments(ctx: Context, value: str = "", marker: str = "") -> dict[str, Any]:
    """Return the raw arguments this backend received (and touch `<marker>.called` when given)."""
    if marker:
        (_MARKER_DIR / f"{marker}.called").write_text("called")
    params = ctx.request_context.params or {}
    return {"arguments": dict(params.get("arguments") or {})}


@server.tool(name="summarise_quarterly_revenue_by_region_and_product_line_for_the_board")
def long_named() -> str:
    """A tool whose namespaced name is longer than LLM APIs accept."""
    return "long name reached"


@server.resource("sink://static/readme", mime_type="text/plain")
def readme() -> str:
    return f"kitchen sink readme from {_INSTANCE}" if _INSTANCE else "kitchen sink readme"


@server.resource("sink://items/{item_id}", mime_type="application/json")
def item(item_id: str) -> str:
    return json.dumps({"id": item_id, "instance": _INSTANCE} if _INSTANCE else {"id": item_id})


def _embedded_item(item_id: str) -> EmbeddedResource:
    return EmbeddedResource(
        type="resource",
        resource=TextResourceContents(uri=f"sink://items/{item_id}", mime_type="application/json", text=item(item_id)),
    )


@server.tool()
def link_resources() -> CallToolResult:
    """A result that links to the readme and embeds an item, by this backend's own URIs."""
    return CallToolResult(
        content=[
            TextContent(type="text", text="see the readme"),
            ResourceLink(type="resource_link", uri="sink://static/readme", name="readme", mime_type="text/plain"),
            _embedded_item("7"),
        ]
    )


@server.tool()
async def announce_update(uri: str, ctx: Context) -> str:
    """Announce that `uri` (a backend URI) changed, as a backend whose data changed does."""
    # Session-based clients hear `notifications/resources/updated`; 2026-07-28 clients on their listen stream.
    if ctx.request_context.session.protocol_version < "2026-07-28":
        await ctx.request_context.session.send_resource_updated(uri)
    else:
        await ctx.notify_resource_updated(uri)
    return f"announced {uri}"


_SUBSCRIBED: set[str] = set()


async def _subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
    _SUBSCRIBED.add(params.uri)
    return EmptyResult()


async def _unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
    _SUBSCRIBED.discard(params.uri)
    return EmptyResult()


if os.environ.get("KITCHEN_SINK_SUBSCRIBE") == "1":
    # Session-based clients subscribe with resources/subscribe (2026-07-28 ones on their listen stream).
    server._lowlevel_server.add_request_handler("resources/subscribe", SubscribeRequestParams, _subscribe)
    server._lowlevel_server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, _unsubscribe)


@server.tool()
def subscriptions() -> str:
    """The URIs session-based clients are subscribed to on this backend."""
    return json.dumps(sorted(_SUBSCRIBED))


@server.prompt()
def greet(name: str) -> str:
    """Greet someone."""
    return f"Hello {name}, from the kitchen sink."


@server.prompt()
def cite_item(item_id: str) -> list[Message]:
    """A prompt that embeds an item resource."""
    return [UserMessage(content=_embedded_item(item_id))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, help="serve streamable HTTP on this port instead of stdio")
    args = parser.parse_args()
    if args.http is not None:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run()


if __name__ == "__main__":
    sys.exit(main())
