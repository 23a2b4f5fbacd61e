"""The gateway end to end: real backends (stdio subprocess and HTTP server), the gateway under
uvicorn, and the official `mcp` client over real HTTP, for both client protocol revisions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from harness import (
    KITCHEN_SINK_MARKERS_ENV,
    MCP_HEADERS,
    BackendProcess,
    GatewayProcess,
    eventually,
    free_port,
    http_connector,
    initialize_request,
    mcp_client,
    run_cli,
    start_http_backend,
    stdio_connector,
    write_gateway_config,
)

CLIENT_MODES = ["legacy", "auto"]
EXPECTED_VERSION = {"legacy": "2025-11-25", "auto": "2026-07-28"}


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def remote_backend(markers: Path) -> Iterator[BackendProcess]:
    backend = start_http_backend(env={KITCHEN_SINK_MARKERS_ENV: str(markers)})
    yield backend
    backend.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, remote_backend: BackendProcess, markers: Path
) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("gateway")
    write_gateway_config(
        directory,
        {
            "sink": stdio_connector(
                extra="[restart]\ninitial_backoff = 0.1\n",
                env={KITCHEN_SINK_MARKERS_ENV: str(markers), "KITCHEN_SINK_SECRET": "stdio-env-secret"},
            ),
            "remote": http_connector(
                remote_backend.url,
                extra='health_interval = 0.3\nheaders = { "X-Backend-Token" = "${REMOTE_BACKEND_TOKEN}" }',
            ),
            "tight": stdio_connector(extra="timeout = 1"),
            # Nothing listens here: the gateway must start anyway and serve the others.
            "down": http_connector(f"http://127.0.0.1:{free_port()}/mcp", extra="connect_timeout = 2"),
        },
    )
    process = GatewayProcess(directory, free_port())
    process.start(env={"REMOTE_BACKEND_TOKEN": "connector-credential"})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def key(gateway: GatewayProcess) -> str:
    return gateway.create_key("tester", "qa")


def text_of(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


@pytest.mark.anyio
@pytest.mark.parametrize("mode", CLIENT_MODES)
async def test_lists_every_backend_under_one_namespace(gateway: GatewayProcess, key: str, mode: str) -> None:
    async with mcp_client(gateway.url, key, mode=mode) as client:
        assert client.protocol_version == EXPECTED_VERSION[mode]
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"sink__echo", "sink__rich", "remote__echo", "remote__whoami"} <= names
        assert not any(name.startswith("down__") for name in names)
        long_named = next(name for name in names if name.startswith("sink__summarise_quarterly"))
        assert len(long_named) <= 64
        assert text_of(await client.call_tool(long_named, {})) == "long name reached"
        echo = next(t for t in (await client.list_tools()).tools if t.name == "sink__echo")
        assert echo.annotations is not None and echo.annotations.read_only_hint is True

        # Every connected backend's resources, each under its own connector (`down` never listed any).
        templates = (await client.list_resource_templates()).resource_templates
        assert {t.uri_template for t in templates} == {
            f"gateway://{name}/sink://items/{{item_id}}" for name in ("sink", "remote", "tight")
        }
        resources = (await client.list_resources()).resources
        assert {(r.uri, r.name) for r in resources} == {
            (f"gateway://{name}/sink://static/readme", f"{name}__readme") for name in ("sink", "remote", "tight")
        }
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert {"sink__greet", "remote__greet"} <= prompts


@pytest.mark.anyio
@pytest.mark.parametrize("mode", CLIENT_MODES)
async def test_results_are_identical_to_the_backend_called_directly(
    gateway: GatewayProcess, key: str, remote_backend: BackendProcess, mode: str
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("echo", {"text": "héllo"}),
        ("add", {"a": 2, "b": 40}),
        ("rich", {}),
        ("fail_softly", {"reason": "no stock"}),
    ]
    async with mcp_client(remote_backend.url, None, mode=mode) as direct:
        expected = [await direct.call_tool(name, args) for name, args in calls]
    async with mcp_client(gateway.url, key, mode=mode) as client:
        for prefix in ("sink", "remote"):
            for (name, args), want in zip(calls, expected, strict=True):
                got = await client.call_tool(f"{prefix}__{name}", args)
                assert got.content == want.content
                assert got.structured_content == want.structured_content
                assert got.is_error == want.is_error
                assert (got.meta or {}).get("backend.example/trace") == (want.meta or {}).get("backend.example/trace")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", CLIENT_MODES)
async def test_resources_and_prompts_pass_through(gateway: GatewayProcess, key: str, mode: str) -> None:
    async with mcp_client(gateway.url, key, mode=mode) as client:
        readme = await client.read_resource("gateway://remote/sink://static/readme")
        assert readme.contents[0].text == "kitchen sink readme"  # type: ignore[union-attr]
        item = await client.read_resource("gateway://sink/sink://items/42")
        assert json.loads(item.contents[0].text) == {"id": "42"}  # type: ignore[union-attr]
        prompt = await client.get_prompt("remote__greet", {"name": "Ada"})
        assert "Hello Ada" in prompt.messages[0].content.text  # type: ignore[union-attr]
        with pytest.raises(MCPError) as unknown:
            await client.read_resource("nowhere://thing")
        assert "unknown resource" in unknown.value.error.message


@pytest.mark.anyio
@pytest.mark.parametrize("mode", CLIENT_MODES)
async def test_progress_from_backend_reaches_client(gateway: GatewayProcess, key: str, mode: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with mcp_client(gateway.url, key, mode=mode) as client:
        for prefix in ("sink", "remote"):
            seen.clear()
            result = await client.call_tool(f"{prefix}__slow", {"steps": 3}, progress_callback=on_progress)
            assert text_of(result) == "done after 3 steps"
            assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", CLIENT_MODES)
async def test_client_cancellation_reaches_backend(gateway: GatewayProcess, key: str, markers: Path, mode: str) -> None:
    async with mcp_client(gateway.url, key, mode=mode) as client:
        for prefix in ("sink", "remote"):
            marker = f"{prefix}-{mode}"
            async with anyio.create_task_group() as group:

                async def call(tool: str = f"{prefix}__hang", marker: str = marker) -> None:
                    await client.call_tool(tool, {"marker": marker})

                group.start_soon(call)
                # The call is in flight once the backend is inside the tool; cancel then.
                await eventually((markers / f"{marker}.started").exists, timeout=20, what="the call to start")
                group.cancel_scope.cancel()
            cancelled = markers / f"{marker}.cancelled"
            await eventually(cancelled.exists, timeout=10, what="cancellation")


@pytest.mark.anyio
async def test_hanging_backend_times_out_with_clear_error(gateway: GatewayProcess, key: str) -> None:
    async with mcp_client(gateway.url, key) as client:
        started = anyio.current_time()
        result = await client.call_tool("tight__hang", {"marker": "timeout"})
        assert anyio.current_time() - started < 10
        assert result.is_error
        assert "did not answer within 1s" in text_of(result)
        # The backend and the gateway keep working for the next call.
        assert text_of(await client.call_tool("tight__echo", {"text": "still here"})) == "still here"


@pytest.mark.anyio
async def test_agent_token_never_reaches_backend(gateway: GatewayProcess, key: str) -> None:
    async with mcp_client(gateway.url, key) as client:
        seen = (await client.call_tool("remote__whoami", {})).structured_content
        assert seen is not None
        assert seen["authorization"] is None
        assert seen["x_backend_token"] == "connector-credential"
        stdio_seen = (await client.call_tool("sink__whoami", {})).structured_content
        assert stdio_seen is not None and stdio_seen["env_marker"] == "stdio-env-secret"
    assert key not in gateway.log_text()
    assert "connector-credential" not in gateway.log_text()


@pytest.mark.anyio
async def test_backend_crash_gives_clear_error_and_backend_restarts(gateway: GatewayProcess, key: str) -> None:
    async with mcp_client(gateway.url, key) as client:
        before = (await client.call_tool("sink__whoami", {})).structured_content
        crashed = await client.call_tool("sink__crash", {})
        assert crashed.is_error
        assert "went away during the call" in text_of(crashed)

        async def recovered() -> dict[str, Any] | None:
            result = await client.call_tool("sink__whoami", {})
            return None if result.is_error else result.structured_content

        deadline = anyio.current_time() + 20
        after = None
        while after is None and anyio.current_time() < deadline:
            after = await recovered()
            if after is None:
                await anyio.sleep(0.05)
        assert after is not None, "backend was not restarted"
        assert after["pid"] != before["pid"]  # type: ignore[index]
    assert gateway.readyz()["backends"]["sink"]["restarts"] >= 1
    events = [json.loads(line) for line in gateway.log_text().splitlines() if line.startswith("{")]
    sink_events = [e["message"] for e in events if e.get("connector") == "sink"]
    lost = sink_events.index("backend connection lost")
    assert "backend restart scheduled" in sink_events[lost:]
    assert "backend connected" in sink_events[lost:]


@pytest.mark.anyio
async def test_backend_down_at_start_is_reported_and_others_serve(gateway: GatewayProcess, key: str) -> None:
    ready = gateway.readyz()
    assert ready["status"] == "degraded"
    assert ready["backends"]["down"]["state"] == "unhealthy"
    assert ready["backends"]["remote"]["state"] == "healthy"
    # Health pings every 0.3 s all along this module never took a live backend for dead.
    assert ready["backends"]["remote"]["restarts"] == 0
    async with mcp_client(gateway.url, key) as client:
        assert text_of(await client.call_tool("remote__echo", {"text": "ok"})) == "ok"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", CLIENT_MODES)
async def test_backend_list_changed_reaches_connected_clients(gateway: GatewayProcess, key: str, mode: str) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    new_tool = f"dynamic_{mode}"
    async with mcp_client(gateway.url, key, mode=mode, message_handler=on_message) as client:
        if mode == "legacy":
            await client.call_tool("remote__add_tool", {"name": new_tool})
            with anyio.fail_after(10):
                await changed.wait()
        else:
            async with client.listen(tools_list_changed=True) as subscription:
                await client.call_tool("remote__add_tool", {"name": new_tool})
                with anyio.fail_after(10):
                    async for _event in subscription:
                        break
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert f"remote__{new_tool}" in names
        assert text_of(await client.call_tool(f"remote__{new_tool}", {})) == f"I am {new_tool}"


@pytest.mark.anyio
async def test_large_result_passes_through_intact(gateway: GatewayProcess, key: str) -> None:
    size = 10 * 1024 * 1024
    async with mcp_client(gateway.url, key) as client:
        for prefix in ("sink", "remote"):
            result = await client.call_tool(f"{prefix}__big", {"size": size})
            assert len(text_of(result)) == size


# -- authentication --------------------------------------------------------------------------


def _initialize_body() -> bytes:
    return json.dumps(initialize_request()).encode()


_MCP_HEADERS = MCP_HEADERS


@pytest.mark.parametrize("authorization", [None, "Bearer agw_not-a-real-key", "Basic dXNlcjpwYXNz", "Bearer"])
def test_missing_or_unknown_credentials_get_401(gateway: GatewayProcess, authorization: str | None) -> None:
    headers = dict(_MCP_HEADERS)
    if authorization is not None:
        headers["Authorization"] = authorization
    response = httpx.post(gateway.url, content=_initialize_body(), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert response.json()["error"] == "invalid_token"


def test_revoked_key_gets_401(gateway: GatewayProcess) -> None:
    key = gateway.create_key("short-lived")
    headers = {**_MCP_HEADERS, "Authorization": f"Bearer {key}"}
    assert httpx.post(gateway.url, content=_initialize_body(), headers=headers).status_code == 200
    key_id = json.loads(gateway.cli("keys", "list", "--json").stdout.splitlines()[-1])["id"]
    gateway.cli("keys", "revoke", key_id)
    response = httpx.post(gateway.url, content=_initialize_body(), headers=headers)
    assert response.status_code == 401
    assert "revoked" in response.json()["error_description"]


@pytest.mark.anyio
async def test_session_cannot_be_used_with_another_agents_key(gateway: GatewayProcess, key: str) -> None:
    other = gateway.create_key("intruder")
    headers = {**_MCP_HEADERS, "Authorization": f"Bearer {key}"}
    opened = httpx.post(gateway.url, content=_initialize_body(), headers=headers)
    session_id = opened.headers["mcp-session-id"]
    hijack = httpx.post(
        gateway.url,
        json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        headers={**_MCP_HEADERS, "Authorization": f"Bearer {other}", "Mcp-Session-Id": session_id},
    )
    assert hijack.status_code == 404


# -- bad input -------------------------------------------------------------------------------


def _post(gateway: GatewayProcess, key: str, body: bytes, **extra_headers: str) -> httpx.Response:
    headers = {**_MCP_HEADERS, "Authorization": f"Bearer {key}", "Mcp-Protocol-Version": "2026-07-28"}
    return httpx.post(gateway.url, content=body, headers={**headers, **extra_headers})


def test_malformed_json_is_a_parse_error(gateway: GatewayProcess, key: str) -> None:
    response = _post(gateway, key, b'{"jsonrpc": "2.0", "id": 1, "method": ')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == types.PARSE_ERROR


def test_wrong_shape_json_rpc_is_refused(gateway: GatewayProcess, key: str) -> None:
    response = _post(gateway, key, b'{"jsonrpc": "1.0", "identifier": 5}')
    assert response.status_code == 400
    assert response.json()["error"]["code"] in (types.INVALID_REQUEST, types.PARSE_ERROR)


_MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
}
_CALL = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "sink__echo", "arguments": {"text": "hi"}, "_meta": _MODERN_META},
    }
).encode()
_CALL_HEADERS = {"Mcp-Method": "tools/call", "Mcp-Name": "sink__echo"}


@pytest.mark.parametrize(
    ("headers", "status", "answer"),
    [
        ({"Host": "attacker.example"}, 421, "Invalid Host header"),
        ({"Origin": "http://attacker.example"}, 403, "Invalid Origin header"),
        ({"Content-Type": "text/plain"}, 400, "Invalid Content-Type header"),
        ({"Accept": "application/json"}, 406, ""),
        ({"Accept": "text/event-stream"}, 406, ""),
    ],
)
def test_door_checks_refuse_what_the_sdk_refuses(
    gateway: GatewayProcess, key: str, headers: dict[str, str], status: int, answer: str
) -> None:
    """Each check refuses on every request, also after the same client passed it many times."""
    for _ in range(3):
        assert _post(gateway, key, _CALL, **_CALL_HEADERS).status_code == 200
        refused = _post(gateway, key, _CALL, **{**_CALL_HEADERS, **headers})
        assert (refused.status_code, refused.text) == (status, answer)


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "localhost:9"},
        {"Origin": "http://127.0.0.1:8080"},
        {"Content-Type": "Application/JSON; charset=utf-8"},
        {"Accept": "*/*"},
        {"Accept": "application/*, text/*"},
    ],
)
def test_door_checks_let_allowed_values_through(gateway: GatewayProcess, key: str, headers: dict[str, str]) -> None:
    for _ in range(2):
        response = _post(gateway, key, _CALL, **{**_CALL_HEADERS, **headers})
        assert response.status_code == 200, response.text
        assert "hi" in response.text


@pytest.mark.parametrize(
    "params",
    [
        {"name": "sink__echo", "arguments": ["hi"], "_meta": _MODERN_META},
        {"name": 7, "arguments": {"text": "hi"}, "_meta": _MODERN_META},
        {
            "name": "sink__echo",
            "arguments": {"text": "hi"},
            "_meta": {**_MODERN_META, "io.modelcontextprotocol/clientInfo": {}},
        },
        {"name": "sink__echo", "arguments": {"text": "hi"}, "_meta": _MODERN_META, "requestState": 5},
    ],
    ids=["arguments-array", "name-number", "client-info-empty", "request-state-number"],
)
def test_params_the_sdk_refuses_are_refused_after_good_calls_of_the_same_client(
    gateway: GatewayProcess, key: str, params: dict[str, Any]
) -> None:
    """A good call's shape is remembered; a call that differs from it is still validated, and refused."""
    for _ in range(2):
        assert _post(gateway, key, _CALL, **_CALL_HEADERS).status_code == 200
        body = json.dumps({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": params}).encode()
        refused = _post(gateway, key, body, **_CALL_HEADERS).json()
        assert "result" not in refused and refused["error"]["code"] in (types.INVALID_PARAMS, types.HEADER_MISMATCH)


def test_body_over_limit_is_413(gateway: GatewayProcess, key: str) -> None:
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "sink__echo", "arguments": {"text": "x" * 2 * 1024 * 1024}},
        }
    ).encode()
    response = _post(gateway, key, body)
    assert response.status_code == 413


@pytest.mark.anyio
@pytest.mark.parametrize("mode", CLIENT_MODES)
async def test_unknown_tool_and_non_object_arguments_are_clear_errors(
    gateway: GatewayProcess, key: str, mode: str
) -> None:
    async with mcp_client(gateway.url, key, mode=mode) as client:
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("sink__no_such_tool", {})
        assert unknown.value.error.code == types.INVALID_PARAMS
        assert "unknown tool 'sink__no_such_tool'" in unknown.value.error.message
        with pytest.raises(MCPError) as unknown_prompt:
            await client.get_prompt("nobody__greet", {})
        assert "unknown prompt" in unknown_prompt.value.error.message
    # The SDK client refuses non-object arguments itself, so send one by hand.
    legacy = httpx.post(
        gateway.url, content=_initialize_body(), headers={**_MCP_HEADERS, "Authorization": f"Bearer {key}"}
    )
    session = legacy.headers["mcp-session-id"]
    headers = {
        **_MCP_HEADERS,
        "Authorization": f"Bearer {key}",
        "Mcp-Session-Id": session,
        "Mcp-Protocol-Version": "2025-11-25",
    }
    httpx.post(gateway.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    response = httpx.post(
        gateway.url,
        json={"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "sink__echo", "arguments": [1]}},
        headers={**headers, "Accept": "application/json, text/event-stream"},
    )
    payload = _first_json_rpc(response)
    assert payload["error"]["code"] == types.INVALID_PARAMS


def _first_json_rpc(response: httpx.Response) -> dict[str, Any]:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                return json.loads(line[5:])
        raise AssertionError(f"no JSON-RPC message in {response.text!r}")
    return response.json()


# -- stdio front -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stdio_front_runs_the_same_pipeline(gateway: GatewayProcess, key: str) -> None:
    import sys

    parameters = StdioServerParameters(
        command=sys.executable,
        args=["-m", "gateway", "stdio", "--config", str(gateway.config_path), "--key", key],
        env={"REMOTE_BACKEND_TOKEN": "connector-credential"},
    )
    async with Client(parameters, mode="legacy") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "remote__echo" in names
        assert text_of(await client.call_tool("remote__echo", {"text": "over stdio"})) == "over stdio"


def test_stdio_front_refuses_a_bad_key(gateway: GatewayProcess) -> None:
    result = run_cli(
        "stdio",
        "--config",
        str(gateway.config_path),
        "--key",
        "agw_" + "A" * 43,
        env={"REMOTE_BACKEND_TOKEN": "x"},
        check=False,
    )
    assert result.returncode != 0
    assert "unknown API key" in result.stderr
