"""The `/mcp` front in-process: the official client over ASGI, the pipeline on an in-memory backend.

The endpoint, the `tools/call` path and the SDK handlers are the same objects the gateway
serves; only the socket and the bearer door are left out (each request arrives with its
principal, as the door would leave it). Both protocol eras are driven, so the one entry into the
pipeline and the one error table are checked from the client's side in milliseconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from starlette.types import Receive, Scope, Send

from gateway.errors import BackendError, BackendTimeout
from gateway.front.bearer import PRINCIPAL_SCOPE_KEY
from gateway.front.errors import GATEWAY_NOT_READY, POLICY_DENIED
from gateway.front.http import build_endpoint, build_session_manager
from gateway.front.server import ChangeNotifier, build_server
from gateway.identity.principal import Principal
from gateway.settings.server import ServerSettings
from pipeline_world import INTERN, SALES, World, pipeline_world

pytestmark = pytest.mark.anyio

URL = "http://127.0.0.1:8787/mcp"
MODES = ["legacy", "auto"]


@asynccontextmanager
async def front(world: World, principal: Principal, mode: str) -> AsyncIterator[Client]:
    """The official client talking to the endpoint as `principal`, in `mode` (legacy: 2025-11-25)."""
    notifier = ChangeNotifier()
    server = build_server(world.pipeline, notifier)
    settings = ServerSettings()
    sdk = build_session_manager(server, settings)
    endpoint = build_endpoint(server, world.pipeline, notifier, sdk, settings)

    async def authenticated(scope: Scope, receive: Receive, send: Send) -> None:
        scope[PRINCIPAL_SCOPE_KEY] = principal
        await endpoint(scope, receive, send)

    async with sdk.run(), httpx2.AsyncClient(transport=httpx2.ASGITransport(authenticated)) as http:
        async with Client(streamable_http_client(URL, http_client=http), mode=mode) as client:
            yield client


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with pipeline_world(tmp_path) as world:
        yield world


def text_of(result: types.CallToolResult) -> str:
    content = result.content[0]
    assert isinstance(content, types.TextContent)
    return content.text


@pytest.mark.parametrize("mode", MODES)
async def test_a_call_goes_through_and_its_failures_come_back_as_the_table_says(world: World, mode: str) -> None:
    world.crm.tool_results["export"] = BackendTimeout("backend 'crm' did not answer within 30s")
    async with front(world, SALES, mode) as client:
        allowed = await client.call_tool("crm__delete", {"id": "test-1"})
        fixable = await client.call_tool("crm__delete", {"id": 7})
        with pytest.raises(MCPError) as denied:
            await client.call_tool("crm__delete", {"id": "customer-7"})
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("crm__missing", {})

    assert not allowed.is_error and text_of(allowed) == '{"id": "test-1"}'
    # Arguments the model can correct come back as a tool result, not a protocol error.
    assert fixable.is_error and "Correct them" in text_of(fixable)
    assert denied.value.error.code == POLICY_DENIED and denied.value.error.message.startswith("denied: ")
    assert unknown.value.error.code == types.INVALID_PARAMS
    assert [c.arguments for c in world.crm.calls] == [{"id": "test-1"}]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("failure", "expect"),
    [
        # A backend that is slow is the model's to hear about and work around: a tool result.
        (BackendTimeout("backend 'crm' did not answer within 30s"), lambda r: r.is_error),
        # The backend's own protocol error goes back as the backend sent it.
        (BackendError("no such export", code=-32042, data={"hint": "x"}), None),
    ],
)
async def test_backend_failures_take_their_category_shape(
    world: World, mode: str, failure: Exception, expect: Callable[[Any], bool] | None
) -> None:
    world.crm.tool_results["delete"] = failure
    async with front(world, SALES, mode) as client:
        if expect is not None:
            result = await client.call_tool("crm__delete", {"id": "test-1"})
            assert expect(result) and text_of(result) == str(failure)
        else:
            with pytest.raises(MCPError) as raised:
                await client.call_tool("crm__delete", {"id": "test-1"})
            assert (raised.value.error.code, raised.value.error.data) == (-32042, {"hint": "x"})


@pytest.mark.parametrize("mode", MODES)
async def test_listings_and_prompts_go_through_the_sdk_handlers(world: World, mode: str) -> None:
    async with front(world, INTERN, mode) as client:
        tools = await client.list_tools()
        with pytest.raises(MCPError) as hidden_prompt:
            await client.get_prompt("crm__summary")

    assert [t.name for t in tools.tools] == ["crm__search"]
    assert hidden_prompt.value.error.code == types.INVALID_PARAMS


async def test_without_policies_the_agent_hears_not_ready(tmp_path: Path) -> None:
    async with pipeline_world(tmp_path, policies=None) as world, front(world, SALES, "legacy") as client:
        with pytest.raises(MCPError) as listing:
            await client.list_tools()
        with pytest.raises(MCPError) as call:
            await client.call_tool("crm__search", {"q": "acme"})

    assert listing.value.error.code == call.value.error.code == GATEWAY_NOT_READY
