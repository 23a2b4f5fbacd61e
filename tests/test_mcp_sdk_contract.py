"""What the gateway borrows from the `mcp` SDK beyond its public API still exists and still behaves.

Every test names the installed SDK version and what went missing or changed, so an SDK upgrade
that breaks one says exactly what to look at in `gateway.mcp_sdk`.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.client import ClientSession
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from pydantic import BaseModel, ValidationError

from gateway.errors import SdkMismatch
from harness import write_gateway_config

pytestmark = pytest.mark.anyio


@pytest.fixture
def sdk() -> ModuleType:
    """The adapter, or a failure that says which internals the installed SDK lacks."""
    try:
        return importlib.import_module("gateway.mcp_sdk")
    except SdkMismatch as exc:
        pytest.fail(str(exc))


def _session(negotiated: types.InitializeResult | types.DiscoverResult) -> ClientSession:
    to_session, session_reads = anyio.create_memory_object_stream[SessionMessage | Exception](1)
    session_writes, from_session = anyio.create_memory_object_stream[SessionMessage](1)
    for stream in (to_session, from_session):
        stream.close()
    session = ClientSession(session_reads, session_writes)
    session.adopt(negotiated)
    session_reads.close()
    session_writes.close()
    return session


def _stamped(sdk: ModuleType, session: ClientSession, method: str, params: dict[str, Any]) -> tuple[Any, Any]:
    data: dict[str, Any] = {"method": method, "params": params}
    options: CallOptions = {}
    sdk.request_stamp(session)(data, options)
    return data["params"], options.get("headers")


def _changed(sdk: ModuleType, what: str) -> str:
    return f"mcp {sdk.SDK_VERSION} changed {what}; see gateway/mcp_sdk.py"


def test_the_installed_sdk_has_every_internal_the_gateway_borrows(sdk: ModuleType) -> None:
    assert sdk.SDK_VERSION
    assert typing.get_origin(sdk.TransportStreams) is tuple, _changed(sdk, "TransportStreams (no longer a tuple)")
    assert len(typing.get_args(sdk.TransportStreams)) == 2, _changed(sdk, "TransportStreams (not a stream pair)")


def test_the_stamp_of_a_2025_11_25_session_adds_the_version_header(sdk: ModuleType) -> None:
    session = _session(
        types.InitializeResult(
            protocol_version="2025-11-25",
            capabilities=types.ServerCapabilities(),
            server_info=types.Implementation(name="backend", version="1"),
        ),
    )
    params, headers = _stamped(sdk, session, "tools/call", {"name": "echo", "arguments": {}})
    assert headers == {"mcp-protocol-version": "2025-11-25"}, _changed(sdk, f"the 2025-11-25 stamp: {headers}")
    assert params == {"name": "echo", "arguments": {}}, _changed(sdk, f"the 2025-11-25 stamp's params: {params}")


def test_the_stamp_of_a_2026_07_28_session_adds_meta_and_routing_headers(sdk: ModuleType) -> None:
    session = _session(types.DiscoverResult(supported_versions=["2026-07-28"], capabilities=types.ServerCapabilities()))
    params, headers = _stamped(sdk, session, "tools/call", {"name": "echo", "arguments": {}})
    assert headers is not None, _changed(sdk, "the 2026-07-28 stamp: it sets no headers")
    expected_headers = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "echo"}
    assert expected_headers.items() <= headers.items(), _changed(sdk, f"the 2026-07-28 stamp's headers: {headers}")
    meta = params.get("_meta", {})
    assert meta.get(types.PROTOCOL_VERSION_META_KEY) == "2026-07-28", _changed(sdk, f"the 2026-07-28 _meta: {meta}")
    assert {"io.modelcontextprotocol/clientInfo", "io.modelcontextprotocol/clientCapabilities"} <= meta.keys(), (
        _changed(sdk, f"the 2026-07-28 _meta: {meta}")
    )


def test_later_revision_fields_name_what_a_session_drops(sdk: ModuleType) -> None:
    dropped = sdk.later_revision_fields("tools/list", "2025-11-25")
    assert isinstance(dropped, frozenset), _changed(sdk, f"_later_revision_fields' result type: {dropped!r}")
    assert {"ttlMs", "cacheScope"} <= dropped, _changed(sdk, f"the keys a 2025-11-25 session drops: {dropped}")
    assert "tools" not in dropped, _changed(sdk, f"the keys a 2025-11-25 session drops: {dropped}")
    assert sdk.later_revision_fields("tools/list", "2026-07-28") == frozenset(), _changed(
        sdk, "the keys the newest revision drops (none expected)"
    )


async def test_a_stopped_process_has_its_transport_closed(sdk: ModuleType) -> None:
    process = await anyio.open_process([sys.executable, "-c", "pass"])
    while process.returncode is None:  # noqa: ASYNC110
        await anyio.sleep(0.01)
    for stream in (process.stdin, process.stdout, process.stderr):
        assert stream is not None
        await stream.aclose()
    sdk.close_subprocess_transport(process)
    transport = process._process._transport  # type: ignore[attr-defined]  # what the SDK's helper reaches
    assert transport.is_closing(), _changed(sdk, "_close_subprocess_transport: the transport stays open")


def test_invalid_parameters_get_the_sdk_servers_error(sdk: ModuleType) -> None:
    class Params(BaseModel):
        name: str

    with pytest.raises(ValidationError) as invalid:
        Params.model_validate({})
    error = sdk.modern_error_data(invalid.value)
    assert error == types.ErrorData(code=types.INVALID_PARAMS, message="Invalid request parameters", data=""), _changed(
        sdk, f"the error for invalid parameters: {error}"
    )
    own = types.ErrorData(code=types.METHOD_NOT_FOUND, message="Method not found")
    assert sdk.modern_error_data(MCPError.from_error_data(own)) == own, _changed(sdk, "how an MCPError maps")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_handler_may_answer_with_a_wire_dict(sdk: ModuleType, mode: str) -> None:
    """The front's handlers pass backends' results on as dicts (see `front/server.py`), never as models."""
    from mcp import Client
    from mcp.server import Server
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    async def list_tools(ctx: Any, params: Any) -> Any:
        listing: dict[str, Any] = {"tools": [{"name": "anything", "inputSchema": {"type": "object"}}]}
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            listing.update(resultType="complete", ttlMs=0, cacheScope="private")  # as `front.server._listing`
        return listing

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> Any:
        result = {"content": [{"type": "text", "text": "as sent"}], "structuredContent": {"kept": [1, 2]}}
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            result["resultType"] = "complete"  # what `front.server.for_client` adds for these revisions
        return result

    server = Server("contract", on_list_tools=list_tools, on_call_tool=call_tool)
    async with Client(server, mode=mode) as client:
        result = await client.call_tool("anything", {})

    assert result.structured_content == {"kept": [1, 2]}, _changed(sdk, "what it does with a handler's dict result")
    assert isinstance(result.content[0], types.TextContent) and result.content[0].text == "as sent"


def test_a_gateway_on_an_sdk_without_a_borrowed_internal_refuses_to_start_and_says_which(tmp_path: Path) -> None:
    """Rather than failing every forwarded call and reconnecting forever."""
    config = write_gateway_config(tmp_path, {})
    without = (
        "import sys, mcp.client.session as session\n"
        "del session._later_revision_fields\n"
        "from gateway.cli import main\n"
        f"sys.exit(main(['serve', '--config', {str(config)!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", without], capture_output=True, text=True, timeout=60)

    assert result.returncode == 1, result.stderr
    assert "mcp.client.session._later_revision_fields is gone" in result.stderr
    assert "Traceback" not in result.stderr
