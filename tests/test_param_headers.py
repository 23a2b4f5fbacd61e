"""2026-07-28 `Mcp-Param-*` headers must agree with the call's arguments, checked against the catalog's schema.

An intermediary may route on those headers, so a header that says one region while the body
says another is refused; a tool whose schema declares no header is never refused for one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mcp_types as types
import pytest

from harness import MCP_HEADERS, GatewayProcess, running_gateway, stdio_connector

ROUTED = Path(__file__).parent / "backends" / "routed.py"
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path_factory.mktemp("gateway"), {"routed": stdio_connector(script=ROUTED)}) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def key(gateway: GatewayProcess) -> str:
    return gateway.create_key("router")


def call(gateway: GatewayProcess, key: str, tool: str, arguments: dict[str, Any], **headers: str) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    body["params"]["_meta"] = META  # type: ignore[index]
    sent = {
        **MCP_HEADERS,
        "Authorization": f"Bearer {key}",
        "Mcp-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
        **headers,
    }
    return httpx.post(gateway.url, content=json.dumps(body), headers=sent)


def test_a_matching_header_passes(gateway: GatewayProcess, key: str) -> None:
    for _ in range(2):  # the second call answers from what the first learned of the schema
        response = call(gateway, key, "routed__store", {"region": "eu", "text": "hi"}, **{"Mcp-Param-Region": "eu"})
        assert response.status_code == 200, response.text
        assert "eu:hi" in response.text


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"Mcp-Param-Region": "us"}, "does not match"),
        ({}, "is missing"),
    ],
)
def test_a_header_that_disagrees_with_the_arguments_is_refused(
    gateway: GatewayProcess, key: str, headers: dict[str, str], problem: str
) -> None:
    for _ in range(2):
        response = call(gateway, key, "routed__store", {"region": "eu", "text": "hi"}, **headers)
        error = response.json()["error"]
        assert error["code"] == types.HEADER_MISMATCH
        assert "Mcp-Param-Region" in error["message"] and problem in error["message"]


def test_a_tool_declaring_no_header_ignores_param_headers(gateway: GatewayProcess, key: str) -> None:
    response = call(gateway, key, "routed__plain", {"text": "hi"}, **{"Mcp-Param-Region": "us"})
    assert response.status_code == 200, response.text
    assert "hi" in response.text
