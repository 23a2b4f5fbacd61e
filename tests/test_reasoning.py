"""Reasoning capture without changing the agent: the parameter the gateway adds to tool schemas,
the `_meta` key, `required` mode, and policies that read `context.reasoning`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

from harness import (
    KITCHEN_SINK_MARKERS_ENV,
    GatewayProcess,
    free_port,
    mcp_client,
    stdio_connector,
    write_gateway_config,
)

REASONING_KEY = "io.autonomy-gateway/reasoning"
POLICIES = {
    "allow.cedar": "permit (principal, action, resource);\n",
    "tickets.cedar": (
        '@id("touch-needs-a-ticket")\n@reason("Say which ticket this is for.")\n'
        'forbid (principal, action == Action::"sink__show_arguments", resource)\n'
        'unless { context has reasoning && context.reasoning like "*ticket*" };\n'
    ),
}


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, markers: Path) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("reasoning")
    env = {KITCHEN_SINK_MARKERS_ENV: str(markers)}
    write_gateway_config(
        directory,
        {
            "sink": stdio_connector(env=env, extra='[tools.show_arguments]\nreasoning = "required"\n'),
            "quiet": stdio_connector(env=env, extra='reasoning = "off"'),
        },
        policies=POLICIES,
        extra='\n[reasoning]\nmode = "optional"\n',
    )
    process = GatewayProcess(directory, free_port())
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def key(gateway: GatewayProcess) -> str:
    return gateway.create_key("thinker")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_tool_schemas_ask_for_reasoning_per_mode(gateway: GatewayProcess, key: str, mode: str) -> None:
    async with mcp_client(gateway.url, key, mode=mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    optional = tools["sink__add"].input_schema
    assert "reasoning" in optional["properties"] and "reasoning" not in optional.get("required", [])
    assert "Why you are calling this tool" in optional["properties"]["reasoning"]["description"]
    required = tools["sink__show_arguments"].input_schema
    assert "reasoning" in required["required"]
    assert "reasoning" not in tools["quiet__add"].input_schema["properties"]


@pytest.mark.anyio
async def test_backend_never_sees_the_added_parameter(gateway: GatewayProcess, key: str) -> None:
    async with mcp_client(gateway.url, key) as client:
        result = await client.call_tool(
            "sink__show_arguments", {"value": "v", "reasoning": "closing ticket 42 as the customer asked"}
        )
        assert result.structured_content == {"arguments": {"value": "v"}}
        # A tool with strict argument validation still works when the agent fills the parameter in.
        added = await client.call_tool("sink__add", {"a": 1, "b": 2, "reasoning": "checking the sum"})
        assert added.structured_content == {"sum": 3}


@pytest.mark.anyio
async def test_required_reasoning_missing_is_a_tool_error_and_backend_is_not_called(
    gateway: GatewayProcess, key: str, markers: Path
) -> None:
    async with mcp_client(gateway.url, key) as client:
        result = await client.call_tool("sink__show_arguments", {"value": "v", "marker": "no-reasoning"})
        assert result.is_error
        assert "needs your reasoning" in result.content[0].text  # type: ignore[union-attr]
        blank = await client.call_tool("sink__show_arguments", {"reasoning": "   ", "marker": "blank"})
        assert blank.is_error
    assert not (markers / "no-reasoning.called").exists()
    assert not (markers / "blank.called").exists()


@pytest.mark.anyio
async def test_reasoning_in_meta_counts_and_policies_read_it(gateway: GatewayProcess, key: str) -> None:
    async with mcp_client(gateway.url, key) as client:
        ok = await client.call_tool(
            "sink__show_arguments", {"value": "m"}, meta={REASONING_KEY: "ticket 7: refresh the record"}
        )
        assert ok.structured_content == {"arguments": {"value": "m"}}
        with pytest.raises(MCPError) as denied:
            await client.call_tool("sink__show_arguments", {"value": "x", "reasoning": "just because"})
        assert "Say which ticket this is for." in denied.value.error.message
