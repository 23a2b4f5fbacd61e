"""Every client revision against every backend revision, over both backend transports.

Clients: the SDK's session-based handshake (2025-11-25), the stateless 2026-07-28 revision, and
hand-written initialize requests for older handshake revisions (2025-06-18, 2025-03-26,
2024-11-05) that the SDK client no longer offers. Backends: the same server reached with the
handshake (`protocol = "legacy"`) and with the stateless revision (`protocol = "auto"`), each over
stdio and over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import mcp_types as types
import pytest

from harness import (
    BackendProcess,
    GatewayProcess,
    free_port,
    http_connector,
    initialize_request,
    mcp_client,
    start_http_backend,
    stdio_connector,
    write_gateway_config,
)

BACKENDS = {
    "stdio_legacy": ("stdio", 'protocol = "legacy"', "2025-11-25"),
    "stdio_modern": ("stdio", 'protocol = "auto"', "2026-07-28"),
    "http_legacy": ("http", 'protocol = "legacy"', "2025-11-25"),
    "http_modern": ("http", 'protocol = "auto"', "2026-07-28"),
}


@pytest.fixture(scope="module")
def backend() -> Iterator[BackendProcess]:
    process = start_http_backend()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, backend: BackendProcess) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("pairings")
    connectors = {
        name: stdio_connector(extra=setting) if kind == "stdio" else http_connector(backend.url, extra=setting)
        for name, (kind, setting, _) in BACKENDS.items()
    }
    write_gateway_config(directory, connectors)
    process = GatewayProcess(directory, free_port())
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def key(gateway: GatewayProcess) -> str:
    return gateway.create_key("pairings")


def test_backends_negotiated_the_intended_revisions(gateway: GatewayProcess) -> None:
    backends = gateway.readyz()["backends"]
    for name, (_, _, version) in BACKENDS.items():
        assert backends[name]["protocol_version"] == version, name


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("connector", list(BACKENDS))
async def test_sdk_client_against_each_backend(
    gateway: GatewayProcess, key: str, backend: BackendProcess, mode: str, connector: str
) -> None:
    async with mcp_client(backend.url, None, mode=mode) as direct:
        want = await direct.call_tool("rich", {})
        want_prompt = await direct.get_prompt("greet", {"name": "Lin"})
    async with mcp_client(gateway.url, key, mode=mode) as client:
        got = await client.call_tool(f"{connector}__rich", {})
        assert got.content == want.content
        assert got.structured_content == want.structured_content
        assert got.meta is not None and got.meta.get("backend.example/trace") == "abc"
        failed = await client.call_tool(f"{connector}__fail_softly", {"reason": "r"})
        assert failed.is_error
        prompt = await client.get_prompt(f"{connector}__greet", {"name": "Lin"})
        assert prompt.messages == want_prompt.messages


def _post(gateway: GatewayProcess, key: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    response = httpx.post(
        gateway.url,
        json=body,
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            **headers,
        },
        timeout=30,
    )
    assert response.status_code in (200, 202), response.text
    if response.status_code == 202:
        return {}
    if response.headers["content-type"].startswith("text/event-stream"):
        events = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:") and line[5:]]
        return next(event for event in events if event.get("id") == body.get("id"))
    return {**response.json(), "_session": response.headers.get("mcp-session-id")}


@pytest.mark.parametrize("version", ["2025-06-18", "2025-03-26", "2024-11-05"])
def test_older_handshake_revisions_are_served(gateway: GatewayProcess, key: str, version: str) -> None:
    init = httpx.post(
        gateway.url,
        json=initialize_request(version),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
    )
    assert init.status_code == 200
    payload = next(json.loads(line[5:]) for line in init.text.splitlines() if line.startswith("data:") and line[5:])
    assert payload["result"]["protocolVersion"] == version
    headers = {"Mcp-Session-Id": init.headers["mcp-session-id"], "Mcp-Protocol-Version": version}
    _post(gateway, key, {"jsonrpc": "2.0", "method": "notifications/initialized"}, headers)
    listed = _post(gateway, key, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers)
    names = {tool["name"] for tool in listed["result"]["tools"]}
    assert {f"{connector}__echo" for connector in BACKENDS} <= names
    for connector in BACKENDS:
        called = _post(
            gateway,
            key,
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": f"{connector}__echo", "arguments": {"text": version}},
            },
            headers,
        )
        assert called["result"]["content"] == [{"type": "text", "text": version}]
        assert "resultType" not in called["result"] or version >= "2026-07-28"


def test_unsupported_revision_is_refused_clearly(gateway: GatewayProcess, key: str) -> None:
    response = httpx.post(
        gateway.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "Mcp-Protocol-Version": "1999-01-01",
        },
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] in (types.INVALID_REQUEST, types.INVALID_PARAMS, types.UNSUPPORTED_PROTOCOL_VERSION)
    assert "1999-01-01" in json.dumps(error) or "version" in error["message"].lower()
