"""The runtime in-process: the real parts around in-memory backends, on SQLite.

What the runtime owns is when things happen: a backend's new listing is validated by the
policies before agents see it, listings outlive a restart so a backend that is down at start
keeps its tools, and readiness says which parts are missing. Each test runs in about a second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from fake_connector import FakeConnector, tool
from gateway.calls import Call, Origin
from gateway.config import load_config
from gateway.connectors.base import Health, HealthState, Listing, ListingListener, ResourceUpdateListener
from gateway.errors import BackendUnavailable
from gateway.identity.principal import Principal
from gateway.runtime import GatewayRuntime
from gateway.settings.connectors import McpHttpConnector, McpStdioConnector
from harness import write_gateway_config

pytestmark = pytest.mark.anyio

SALES = Principal(agent="sales-bot", roles=("sales",))
POLICIES = {
    "access.cedar": """
@id("list") permit (principal is Agent, action == Action::"list_tools", resource is Server);
@id("sales") permit (principal in Role::"sales", action in Action::"call_tool", resource in Server::"crm");
"""
}


class Backends:
    """Makes the runtime's connectors: one in-memory backend per connector file, kept for the test."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.made: dict[str, FakeConnector] = {}

    def __call__(
        self,
        settings: McpStdioConnector | McpHttpConnector,
        on_listing: ListingListener,
        on_resource_updated: ResourceUpdateListener | None,
    ) -> FakeConnector:
        fake = FakeConnector(
            settings.name, tools=[tool("search")], on_listing=on_listing, on_resource_updated=on_resource_updated
        )
        if self.down:
            fake.health = Health(HealthState.UNHEALTHY, "connection refused")
        self.made[settings.name] = fake
        return fake


@asynccontextmanager
async def running(tmp_path: Path, backends: Backends) -> AsyncIterator[GatewayRuntime]:
    config = write_gateway_config(
        tmp_path, {"crm": 'name = "crm"\nkind = "mcp-stdio"\ncommand = ["crm"]\n'}, policies=POLICIES
    )
    async with GatewayRuntime(load_config(config), connector_factory=backends).running() as runtime:
        await runtime.backends_attempted.wait()
        yield runtime


async def names(runtime: GatewayRuntime) -> list[str]:
    return [t["name"] for t in (await runtime.pipeline.list_tools(Origin(SALES))).tools]


async def test_a_new_tool_is_served_once_the_policies_know_it(tmp_path: Path) -> None:
    backends = Backends()
    async with running(tmp_path, backends) as runtime:
        assert await names(runtime) == ["crm__search"]
        await backends.made["crm"].change_listing(Listing(tools=(tool("search"), tool("export"))))

        assert await names(runtime) == ["crm__search", "crm__export"]
        call = Call.of("tools/call", Origin(SALES), "crm__export", {})
        assert not (await runtime.pipeline.call_tool(call)).get("isError")
        assert runtime.policy.store.status.loaded


async def test_a_backend_down_at_start_keeps_the_tools_it_listed_before(tmp_path: Path) -> None:
    async with running(tmp_path, Backends()) as runtime:
        assert await names(runtime) == ["crm__search"]

    down = Backends(down=True)
    async with running(tmp_path, down) as runtime:
        # Listed and allowed from the stored listing; the call itself says the backend is down.
        assert await names(runtime) == ["crm__search"]
        with pytest.raises(BackendUnavailable):
            await runtime.pipeline.call_tool(Call.of("tools/call", Origin(SALES), "crm__search", {}))
        readiness = runtime.readiness()
        assert readiness.started()
        assert readiness.backends()["crm"].state is HealthState.UNHEALTHY


async def test_readiness_reads_the_running_parts(tmp_path: Path) -> None:
    async with running(tmp_path, Backends()) as runtime:
        readiness = runtime.readiness()
        await readiness.ping_storage()
        assert readiness.started() and readiness.policies().loaded
        assert readiness.backends()["crm"].state is HealthState.HEALTHY
        assert dict(readiness.catalog_problems()) == {}
    assert not readiness.started()
