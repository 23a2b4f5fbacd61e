"""What agents send that is not what the spec allows: each gets a short, readable answer and the
gateway carries on. A real gateway under uvicorn, a real stdio backend, raw HTTP where the official
client would refuse to send the message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from harness import MCP_HEADERS, GatewayProcess, mcp_client, open_legacy_session, running_gateway, stdio_connector

ERAS = ["session", "sessionless", "stateless"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path_factory.mktemp("hostile"), {"sink": stdio_connector()}) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def key(gateway: GatewayProcess) -> str:
    return gateway.create_key("hostile-agent")


def headers_for(era: str, gateway: GatewayProcess, key: str) -> dict[str, str]:
    """The headers of a request in each way the front is reached."""
    if era == "session":
        return open_legacy_session(gateway.url, key)
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {key}"}
    return {**headers, "Mcp-Protocol-Version": "2026-07-28"} if era == "stateless" else headers


WRONG_SHAPES = {
    "no method": b'{"jsonrpc":"2.0","id":7}',
    "jsonrpc 1.0": b'{"jsonrpc":"1.0","id":7,"method":"tools/list"}',
    "no jsonrpc": b'{"id":7,"method":"tools/list"}',
    "bare string": b'"tools/list"',
    "bare number": b"42",
    "null": b"null",
    "numeric method": b'{"jsonrpc":"2.0","id":7,"method":5}',
    "array params": b'{"jsonrpc":"2.0","id":7,"method":"tools/list","params":[1]}',
    "empty batch": b"[]",
    "batch": b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]',
}

UNUSABLE_IDS = {
    "object id": b'{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}',
    "array id": b'{"jsonrpc":"2.0","id":[1],"method":"tools/list"}',
    "object id call": (
        b'{"jsonrpc":"2.0","id":{"a":1},"method":"tools/call","params":{"name":"sink__echo","arguments":{"text":"x"}}}'
    ),
    "null id": b'{"jsonrpc":"2.0","id":null,"method":"tools/list"}',
    "boolean id": b'{"jsonrpc":"2.0","id":true,"method":"tools/list"}',
}


def echo_call(request_id: int, text: str) -> dict[str, object]:
    params = {"name": "sink__echo", "arguments": {"text": text}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def assert_short_invalid_request(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == types.INVALID_REQUEST, error
    message = error["message"]
    assert "\n" not in message and len(message) < 160 and "validation error" not in message.lower(), message
    return response.json()


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("shape", WRONG_SHAPES)
def test_wrong_shape_json_rpc_is_an_invalid_request_in_one_line(
    gateway: GatewayProcess, key: str, era: str, shape: str
) -> None:
    headers = headers_for(era, gateway, key)
    assert_short_invalid_request(httpx.post(gateway.url, headers=headers, content=WRONG_SHAPES[shape], timeout=30))


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("shape", UNUSABLE_IDS)
def test_an_id_that_is_not_a_string_or_integer_is_refused_with_a_null_id(
    gateway: GatewayProcess, key: str, era: str, shape: str
) -> None:
    headers = headers_for(era, gateway, key)
    answer = assert_short_invalid_request(
        httpx.post(gateway.url, headers=headers, content=UNUSABLE_IDS[shape], timeout=30)
    )
    assert answer["id"] is None


@pytest.mark.parametrize("era", ["session", "sessionless"])
def test_the_id_is_echoed_when_it_is_usable_and_unparseable_json_is_a_parse_error(
    gateway: GatewayProcess, key: str, era: str
) -> None:
    headers = headers_for(era, gateway, key)
    answer = assert_short_invalid_request(
        httpx.post(gateway.url, headers=headers, content=WRONG_SHAPES["jsonrpc 1.0"], timeout=30)
    )
    assert answer["id"] == 7 and '"jsonrpc": "2.0"' in answer["error"]["message"]  # type: ignore[index]
    unparseable = httpx.post(gateway.url, headers=headers, content=b'{"jsonrpc":', timeout=30)
    assert unparseable.status_code == 400
    assert unparseable.json() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": types.PARSE_ERROR, "message": "Parse error: the body is not valid JSON"},
    }


def test_a_session_survives_malformed_messages(gateway: GatewayProcess, key: str) -> None:
    headers = headers_for("session", gateway, key)
    for body in [*WRONG_SHAPES.values(), *UNUSABLE_IDS.values()]:
        assert httpx.post(gateway.url, headers=headers, content=body, timeout=30).status_code == 400
    response = httpx.post(gateway.url, headers=headers, json=echo_call(8, "ok"), timeout=30)
    assert response.status_code == 200 and '"ok"' in response.text


# -- arguments that break the tool's input schema ---------------------------------------------

SCHEMA_POLICIES = {
    "tools.cedar": """
@id("everyone-lists")
permit (principal, action == Action::"list_tools", resource);

@id("everyone-echoes")
permit (principal, action == Action::"sink__echo", resource);

@id("adders-add")
permit (principal in Role::"adder", action == Action::"sink__add", resource);

@id("no-big-sums")
@reason("Sums start below 100.")
forbid (principal, action == Action::"sink__add", resource) when { context.input.a > 100 };
"""
}


@pytest.fixture(scope="module")
def policed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("schema")
    with running_gateway(directory, {"sink": stdio_connector()}, policies=SCHEMA_POLICIES) as gateway:
        yield gateway


def audit_search(gateway: GatewayProcess, *args: str) -> list[dict[str, Any]]:
    output = gateway.cli("audit", "search", "--json", "--limit", "500", *args).stdout
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def text_of(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_arguments_that_break_the_schema_are_a_tool_error_the_model_can_correct(
    policed: GatewayProcess, mode: str
) -> None:
    key = policed.create_key(f"adder-{mode}", "adder")
    async with mcp_client(policed.url, key, mode=mode) as client:
        wrong_type = await client.call_tool("sink__add", {"a": "one", "b": 2})
        missing = await client.call_tool("sink__add", {"a": 1})
        corrected = await client.call_tool("sink__add", {"a": 1, "b": 2})
        with pytest.raises(MCPError) as denied:
            await client.call_tool("sink__add", {"a": 1000, "b": 2})
    assert wrong_type.is_error and missing.is_error and not corrected.is_error
    assert text_of(wrong_type) == (
        "invalid arguments for tool 'sink__add': argument 'a' must be an integer, got a string. "
        "Correct them to match the tool's input schema (see tools/list) and call again."
    )
    assert "required argument 'b' is missing" in text_of(missing)
    assert corrected.structured_content == {"sum": 3}
    # A policy that denies these (valid) arguments is still a denial.
    assert denied.value.error.code == -32003 and "Sums start below 100." in denied.value.error.message

    entries = {entry["call_id"]: entry for entry in audit_search(policed, "--agent", f"adder-{mode}")}
    invalid = [entry for entry in entries.values() if entry["decision"] == "invalid_arguments"]
    assert len(invalid) == 2
    assert all(entry["outcome"] == "invalid_arguments" for entry in invalid)
    searched = audit_search(policed, "--agent", f"adder-{mode}", "--outcome", "invalid_arguments")
    assert {entry["call_id"] for entry in searched} == {entry["call_id"] for entry in invalid}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_tool_the_agent_may_not_see_is_unknown_whatever_its_arguments(
    policed: GatewayProcess, mode: str
) -> None:
    key = policed.create_key(f"echoer-{mode}")
    async with mcp_client(policed.url, key, mode=mode) as client:
        assert [tool.name for tool in (await client.list_tools()).tools] == ["sink__echo"]
        answers = []
        for arguments in ({"a": "one", "b": 2}, {"a": 1}, {"a": 1, "b": 2}):
            with pytest.raises(MCPError) as unknown:
                await client.call_tool("sink__add", arguments)
            answers.append((unknown.value.error.code, unknown.value.error.message))
    unknown_tool = (types.INVALID_PARAMS, "unknown tool 'sink__add': list the tools to see the available names")
    assert answers == [unknown_tool] * 3
    assert all(entry["decision"] != "invalid_arguments" for entry in audit_search(policed, "--agent", f"echoer-{mode}"))


# -- text no UTF-8 can carry ------------------------------------------------------------------

MODERN_META = (
    b',"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
    b'"io.modelcontextprotocol/clientCapabilities":{},'
    b'"io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"}}'
)


def lone_surrogate_call(era: str, request_id: int, *, tool: bytes = b"sink__echo", text: bytes = b"\\ud800x") -> bytes:
    """A tools/call whose argument is the JSON escape of a lone UTF-16 surrogate, as raw bytes."""
    meta = MODERN_META if era == "stateless" else b""
    return b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s","arguments":{"text":"%s"}%s}}' % (
        request_id,
        tool,
        text,
        meta,
    )


def with_call_headers(era: str, headers: dict[str, str], tool: str = "sink__echo") -> dict[str, str]:
    """The 2026-07-28 revision repeats a call's method and tool name in headers."""
    return {**headers, "Mcp-Method": "tools/call", "Mcp-Name": tool} if era == "stateless" else headers


def client_port(response: httpx.Response) -> int:
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


@pytest.mark.parametrize("era", ["session", "stateless"])
def test_a_lone_surrogate_in_an_argument_is_invalid_arguments_and_the_connection_is_kept(
    gateway: GatewayProcess, key: str, era: str
) -> None:
    headers = with_call_headers(era, headers_for(era, gateway, key))
    with httpx.Client(timeout=30) as client:
        bad = client.post(gateway.url, headers=headers, content=lone_surrogate_call(era, 21))
        bad_port = client_port(bad)
        good = client.post(gateway.url, headers=headers, content=lone_surrogate_call(era, 22, text=b"fine"))
        assert client_port(good) == bad_port  # one connection: the bad request did not reset it
    assert bad.status_code == 200, bad.text
    result = bad.json()["result"]
    assert result["isError"] is True
    assert result["content"][0]["text"] == (
        "invalid arguments for tool 'sink__echo': argument 'text' holds text that is not valid Unicode "
        "(a lone UTF-16 surrogate such as \\ud800). Send it as text UTF-8 can encode and call again."
    )
    assert good.status_code == 200 and good.json()["result"]["content"][0]["text"] == "fine"

    entry = next(e for e in audit_search(gateway, "--agent", "hostile-agent") if e["request_id"] == 21)
    assert entry["decision"] == "invalid_arguments" and entry["outcome"] == "invalid_arguments"
    assert entry["connector"] == "sink"


@pytest.mark.parametrize("era", ["session", "stateless"])
def test_a_lone_surrogate_outside_the_arguments_is_an_invalid_request(
    gateway: GatewayProcess, key: str, era: str
) -> None:
    headers = with_call_headers(era, headers_for(era, gateway, key))
    with httpx.Client(timeout=30) as client:
        bad = client.post(
            gateway.url, headers=headers, content=lone_surrogate_call(era, 23, tool=b"sink__\\udc00", text=b"fine")
        )
        bad_port = client_port(bad)
        good = client.post(gateway.url, headers=headers, content=lone_surrogate_call(era, 24, text=b"fine"))
        assert client_port(good) == bad_port
    answer = assert_short_invalid_request(bad)
    assert answer["id"] == 23 and "params.name is not valid Unicode" in answer["error"]["message"]  # type: ignore[index]
    assert good.status_code == 200


def test_a_lone_surrogate_for_a_tool_the_agent_may_not_see_is_an_unknown_tool(policed: GatewayProcess) -> None:
    headers = open_legacy_session(policed.url, policed.create_key("surrogate-echoer"))
    body = lone_surrogate_call("session", 25, tool=b"sink__add")
    answer = httpx.post(policed.url, headers=headers, content=body, timeout=30).json()
    assert answer["error"] == {
        "code": types.INVALID_PARAMS,
        "message": "unknown tool 'sink__add': list the tools to see the available names",
        "data": {"type": "UnknownTool"},
    }
