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

from harness import TESTS, GatewayProcess, eventually, mcp_client, running_gateway, stdio_connector

pytestmark = pytest.mark.anyio

UNRULY = TESTS / "backends" / "unruly.py"
FLOOD = 50_000
#: Agents calling the healthy backend while the flood is processed, each in its own session.
CALLERS = 4


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


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
                names = {tool.name for tool in (await client.list_tools()).tools}
                if f"sprawl__bulk_{FLOOD - 1:05d}" in names:
                    assert len(names) == FLOOD + 10  # both backends' own five tools, and the flood
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
