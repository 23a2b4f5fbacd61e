"""Bounds on a backend's listing: too many tools, too many bytes, one oversized definition.

Each test runs a real gateway with a stdio backend (`tests/backends/unruly.py`) called `sprawl`,
which is told to `flood` its listing with thousands of tools or an oversized definition and
announces it with `list_changed`; the refusal must show in `/readyz` and in the log, once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from gateway.config import load_config
from gateway.connectors.listing_bounds import ListingBudget
from gateway.errors import ListingRefused
from gateway.settings.connectors import ListingLimits
from harness import (
    TESTS,
    GatewayProcess,
    mcp_client,
    run_cli,
    running_gateway,
    stdio_connector,
    wait_until,
    write_gateway_config,
)

UNRULY = TESTS / "backends" / "unruly.py"
FLOOD = 50_000


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def tool_names(gateway: GatewayProcess, key: str) -> set[str]:
    async with mcp_client(gateway.url, key) as client:
        return {tool.name for tool in (await client.list_tools()).tools}


async def flood(gateway: GatewayProcess, key: str, **arguments: int) -> None:
    async with mcp_client(gateway.url, key) as client:
        result = await client.call_tool("sprawl__flood", arguments)
        assert text_of(result).startswith("flood answered")


def sprawl_problems(gateway: GatewayProcess) -> list[str] | None:
    """The sprawl backend's problems once `/readyz` shows it degraded, else None."""
    backend = gateway.readyz()["backends"]["sprawl"]
    return backend["problems"] if backend["state"] == "degraded" else None


def test_default_bounds_refuse_fifty_thousand_tools_and_keep_the_previous_listing(tmp_path: Path) -> None:
    with running_gateway(
        tmp_path, {"steady": stdio_connector(script=UNRULY), "sprawl": stdio_connector(script=UNRULY)}
    ) as gateway:
        key = gateway.create_key("agent")
        before = anyio.run(tool_names, gateway, key)
        assert {"sprawl__echo", "sprawl__flood", "steady__echo"} <= before

        anyio.run(lambda: flood(gateway, key, tools=FLOOD))
        problems = wait_until(lambda: sprawl_problems(gateway), what="the sprawl backend to be degraded")
        assert len(problems) == 1
        assert "more than max_tools = 1000 tools" in problems[0]
        assert "raise max_tools in the connector file" in problems[0]
        assert "the last accepted one stays in force" in problems[0]
        readyz = gateway.readyz()
        assert readyz["status"] == "degraded"
        assert readyz["backends"]["steady"]["state"] == "healthy"

        assert anyio.run(tool_names, gateway, key) == before
        assert gateway.log_text().count("backend listing breaks a bound") == 1


def test_one_oversized_definition_is_left_out_and_the_others_are_served(tmp_path: Path) -> None:
    connectors = {"sprawl": stdio_connector(script=UNRULY, extra="max_definition_bytes = 4096\n")}
    with running_gateway(tmp_path, connectors) as gateway:
        key = gateway.create_key("agent")
        anyio.run(lambda: flood(gateway, key, tools=3, description_bytes=100_000))
        problems = wait_until(lambda: sprawl_problems(gateway), what="the sprawl backend to be degraded")
        assert len(problems) == 1
        assert "tool 'bulk_00000' of backend 'sprawl'" in problems[0]
        assert "more than max_definition_bytes = 4096: it is left out of the catalog" in problems[0]
        names = anyio.run(tool_names, gateway, key)
        assert {"sprawl__bulk_00001", "sprawl__bulk_00002", "sprawl__echo"} <= names
        assert "sprawl__bulk_00000" not in names


def test_a_twenty_megabyte_description_never_reaches_agents(tmp_path: Path) -> None:
    with running_gateway(tmp_path, {"sprawl": stdio_connector(script=UNRULY)}) as gateway:
        key = gateway.create_key("agent")
        anyio.run(lambda: flood(gateway, key, tools=3, description_bytes=20_000_000))
        problems = wait_until(lambda: sprawl_problems(gateway), what="the sprawl backend to be degraded")
        assert "more than max_listing_bytes = 8388608 bytes of definitions" in problems[0]
        assert "raise max_listing_bytes in the connector file" in problems[0]

        async def longest_description() -> int:
            async with mcp_client(gateway.url, key) as client:
                return max(len(tool.description or "") for tool in (await client.list_tools()).tools)

        assert anyio.run(longest_description) < 1000


def test_a_connector_file_overrides_the_gateway_wide_bounds(tmp_path: Path) -> None:
    (tmp_path / "connectors").mkdir()
    (tmp_path / "connectors" / "own.toml").write_text(stdio_connector(extra="max_tools = 7\n"))
    (tmp_path / "connectors" / "shared.toml").write_text(stdio_connector())
    config_path = tmp_path / "gateway.toml"
    config_path.write_text('[connectors]\ndir = "connectors"\nmax_tools = 5\n')
    limits = {c.name: c.listing_limits() for c in load_config(config_path).connectors}
    assert (limits["own"].max_tools, limits["shared"].max_tools) == (7, 5)
    assert limits["own"].max_definition_bytes == limits["shared"].max_definition_bytes == 64 * 1024


def test_definitions_the_catalog_cannot_file_are_left_out_with_a_problem() -> None:
    budget = ListingBudget("odd", ListingLimits())
    kept = budget.take("tool", [{"name": "fine"}, {"description": "no name"}, "text", {"name": 3}])
    assert kept == [{"name": "fine"}]
    assert len(budget.problems) == 3
    assert budget.problems[0].startswith("a tool of backend 'odd' has no name (text): it is left out of the catalog")
    assert '{"description":"no name"}' in budget.problems[0]
    with pytest.raises(ListingRefused, match="answered its tool listing without a list of tools"):
        budget.take("tool", {"name": "not a list"})


def test_a_first_listing_over_a_bound_leaves_the_backend_connected_without_tools(tmp_path: Path) -> None:
    """Refused at connect: nothing is offered, the backend is not restarted, and the operator sees why."""
    config = write_gateway_config(tmp_path, {"tight": stdio_connector(script=UNRULY, extra="max_tools = 2\n")})
    listed = run_cli("tools", "list", "--config", str(config), "--json").stdout.splitlines()
    rows = [row for line in listed if (row := json.loads(line))["connector"] != "gateway"]
    assert len(rows) == 1
    assert rows[0]["connector"] == "tight" and rows[0]["health"] == "degraded"
    assert rows[0]["detail"].startswith(
        "(left out: backend 'tight' lists more than max_tools = 2 tools (5 read so far)"
    )
