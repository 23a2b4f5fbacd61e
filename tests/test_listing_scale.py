"""A backend whose listing explodes must not stall the gateway for anyone else.

The gateway runs two stdio backends (`tests/backends/unruly.py`): `steady`, which agents keep
calling, and `sprawl`, allowed 50,000 tools, which is told to `flood` its listing and announces it
with `list_changed`. While the gateway takes the new listing in (catalog, Cedar schema, policy
validation, every agent's visibility), the other agents' calls keep a latency budget, and a
`tools/list` answers with all 50,000 tools once the policies that know them are in force.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from harness import TESTS, GatewayProcess, eventually, mcp_client, running_gateway, stdio_connector

pytestmark = pytest.mark.anyio

UNRULY = TESTS / "backends" / "unruly.py"
FLOOD = 50_000
#: Agents calling the healthy backend while the flood is processed, each in its own session.
CALLERS = 4


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def all_tool_names(client: Client) -> list[str]:
    """Every page of the listing, following `nextCursor` as an agent must."""
    names: list[str] = []
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor)
        names.extend(tool.name for tool in page.tools)
        cursor = page.next_cursor
        if cursor is None:
            return names


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@pytest.fixture
def flood_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    connectors = {
        "steady": stdio_connector(script=UNRULY),
        "sprawl": stdio_connector(script=UNRULY, extra=f"max_tools = {FLOOD + 100}\nmax_listing_bytes = 67108864\n"),
    }
    with running_gateway(tmp_path, connectors) as gateway:
        yield gateway


async def test_fifty_thousand_tools_do_not_stall_other_agents(flood_gateway: GatewayProcess) -> None:
    key = flood_gateway.create_key("busy-agent")
    latencies: list[float] = []
    flood_listed = anyio.Event()

    async def keep_calling(index: int) -> None:
        async with mcp_client(flood_gateway.url, key) as client:
            while not flood_listed.is_set():
                started = anyio.current_time()
                result = await client.call_tool("steady__echo", {"text": f"caller {index}"})
                latencies.append(anyio.current_time() - started)
                assert text_of(result) == f"echo answered: caller {index}"

    async def wait_for_flood() -> float:
        """Lists until the generated tools show; returns how long the listing that showed them took."""
        async with mcp_client(flood_gateway.url, key) as client:
            await client.call_tool("sprawl__flood", {"tools": FLOOD})
            deadline = anyio.current_time() + 50
            while anyio.current_time() < deadline:
                started = anyio.current_time()
                names = await all_tool_names(client)
                assert len(set(names)) == len(names)
                # Pages read while the new policies were prepared hide the tools they do not know yet.
                if len(names) == FLOOD + 14:  # both backends' own five tools, the flood, and the gateway's own four
                    return anyio.current_time() - started
                await anyio.sleep(0.2)
            raise AssertionError("the 50,000 tools never appeared in the listing")

    listing_seconds: list[float] = []
    async with anyio.create_task_group() as group:
        for index in range(CALLERS):
            group.start_soon(keep_calling, index)
        await eventually(lambda: len(latencies) >= CALLERS, what="the callers to get going")
        before = len(latencies)
        listing_seconds.append(await wait_for_flood())
        flood_listed.set()
    during = latencies[before:]
    assert len(during) >= 20, f"only {len(during)} calls completed while the flood was processed"
    assert p99(during) < 1.0, f"p99 {p99(during):.3f}s over {len(during)} calls, max {max(during):.3f}s"
    assert listing_seconds[0] < 30
    assert flood_gateway.readyz()["backends"]["sprawl"]["state"] == "healthy"


async def test_a_listing_comes_in_pages_an_agent_follows_to_the_end(tmp_path: Path) -> None:
    connectors = {"steady": stdio_connector(script=UNRULY), "sprawl": stdio_connector(script=UNRULY)}
    with running_gateway(tmp_path, connectors, server_extra="tools_page_size = 4") as gateway:
        key = gateway.create_key("agent")
        async with mcp_client(gateway.url, key) as client:
            await client.call_tool("sprawl__flood", {"tools": 7})
            names = await eventually_listed(client, "sprawl__bulk_00006")
            assert len(names) == len(set(names)) == 21, sorted(names)  # 5 + 5 + 7, and the gateway's own four
            first = await client.list_tools()
            assert len(first.tools) == 4 and first.next_cursor is not None
            with pytest.raises(MCPError, match="unknown tools/list cursor 'garbage': list the tools again"):
                await client.list_tools(cursor="garbage")


async def eventually_listed(client: Client, name: str) -> list[str]:
    """The listing once it holds `name` and two listings in a row agree.

    The catalog may change while an agent pages through it (a backend's new tools are pinned just
    after they arrive), and pages read across a change can skip a tool, as any window paging can:
    `notifications/tools/list_changed` tells the agent to list again. Paging itself is what is
    tested here, so it is judged on a catalog that holds still.
    """
    deadline = anyio.current_time() + 30
    previous: list[str] | None = None
    while anyio.current_time() < deadline:
        names = await all_tool_names(client)
        if name in names and names == previous:
            return names
        previous = names
        await anyio.sleep(0.1)
    raise AssertionError(f"{name} never appeared in the listing")
