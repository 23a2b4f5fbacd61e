"""The in-memory connector keeps the `Connector` protocol, and serves a catalog as a backend would."""

from __future__ import annotations

import inspect
from typing import Any

import anyio
import pytest

from fake_connector import FakeCall, FakeConnector, tool
from gateway.catalog import Catalog
from gateway.connectors import Connector
from gateway.connectors.base import Health, HealthState, Listing
from gateway.connectors.mcp_connector import McpConnector
from gateway.errors import BackendError, BackendTimeout, BackendUnavailable
from gateway.settings.connectors import McpStdioConnector

pytestmark = pytest.mark.anyio

_PROTOCOL_MEMBERS = sorted(name for name in vars(Connector) if not name.startswith("_"))


@pytest.mark.parametrize("implementation", [McpConnector, FakeConnector])
@pytest.mark.parametrize("member", _PROTOCOL_MEMBERS)
def test_every_connector_has_the_protocols_exact_signatures(implementation: type, member: str) -> None:
    declared = inspect.getattr_static(Connector, member)
    implemented = inspect.getattr_static(implementation, member)
    if isinstance(declared, property):
        assert isinstance(implemented, property), f"{implementation.__name__}.{member} must be a property"
        return
    assert inspect.signature(implemented, eval_str=True) == inspect.signature(declared, eval_str=True)
    assert inspect.iscoroutinefunction(implemented) == inspect.iscoroutinefunction(declared)


def test_a_catalog_builds_from_its_listing() -> None:
    crm = FakeConnector(
        "crm",
        tools=[tool("search", description="Find accounts"), tool("delete")],
        resources=[{"uri": "crm://accounts", "name": "accounts"}],
        prompts=[{"name": "summary"}],
    )
    catalog = Catalog([McpStdioConnector(name="crm", kind="mcp-stdio", command=("crm",))])
    assert catalog.update("crm", crm.listing)
    assert [(entry.exposed, entry.original) for entry in catalog.tools()] == [
        ("crm__search", "search"),
        ("crm__delete", "delete"),
    ]
    assert catalog.resolve_tool("crm__search").definition["description"] == "Find accounts"
    assert [entry.exposed for entry in catalog.prompts()] == ["crm__summary"]
    assert len(catalog.resources()) == 1
    assert crm.listing.capabilities == {"tools": {}, "resources": {}, "prompts": {}}


async def test_scripted_answers_and_errors_and_the_calls_received() -> None:
    answer = {"content": [{"type": "text", "text": "3 accounts"}]}
    crm = FakeConnector(
        "crm",
        tools=[tool("search"), tool("slow"), tool("echo")],
        tool_results={"search": answer, "slow": BackendTimeout("backend 'crm' did not answer within 30s")},
    )
    result = await crm.call_tool("search", {"q": "acme"}, meta={"trace": "1"}, on_progress=None)
    assert result == answer
    result["content"].clear()
    assert await crm.call_tool("search", {}, meta=None, on_progress=None) == answer, "the script is not changed"
    with pytest.raises(BackendTimeout):
        await crm.call_tool("slow", {}, meta=None, on_progress=None)
    echoed = await crm.call_tool("echo", {"b": 2, "a": 1}, meta=None, on_progress=None)
    assert echoed == {"content": [{"type": "text", "text": '{"a": 1, "b": 2}'}]}
    with pytest.raises(BackendError, match="Unknown tool: gone") as raised:
        await crm.call_tool("gone", {}, meta=None, on_progress=None)
    assert raised.value.code == -32602
    assert crm.calls == [
        FakeCall("tools/call", "search", {"q": "acme"}, {"trace": "1"}),
        FakeCall("tools/call", "search", {}),
        FakeCall("tools/call", "slow", {}),
        FakeCall("tools/call", "echo", {"b": 2, "a": 1}),
        FakeCall("tools/call", "gone", {}),
    ]


async def test_resources_and_prompts_answer_from_their_own_scripts() -> None:
    docs = FakeConnector(
        "docs",
        resources=[{"uri": "docs://readme", "name": "readme"}],
        prompts=[{"name": "summary"}],
        prompt_results={"summary": {"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}]}},
    )
    assert await docs.read_resource("docs://readme", meta=None) == {"contents": [{"uri": "docs://readme", "text": ""}]}
    with pytest.raises(BackendError, match="Resource not found"):
        await docs.read_resource("docs://other", meta=None)
    prompt = await docs.get_prompt("summary", {"topic": "x"}, meta=None)
    assert prompt["messages"][0]["content"]["text"] == "hi"
    assert docs.calls[-1] == FakeCall("prompts/get", "summary", {"topic": "x"})


async def test_a_handler_answers_what_the_script_does_not_and_can_report_progress() -> None:
    async def handler(call: FakeCall) -> dict[str, Any]:
        assert call.on_progress is not None
        await call.on_progress(1, 2, "half")
        return {"content": [{"type": "text", "text": f"{call.name} handled"}]}

    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    crm = FakeConnector("crm", tools=[tool("report")], handler=handler)
    result = await crm.call_tool("report", {}, meta=None, on_progress=on_progress)
    assert result["content"][0]["text"] == "report handled"
    assert seen == [(1, 2, "half")]


async def test_health_decides_whether_calls_reach_it() -> None:
    crm = FakeConnector("crm", tools=[tool("search")])
    crm.health = Health(HealthState.UNHEALTHY, "connection refused")
    with pytest.raises(BackendUnavailable, match=r"backend 'crm' is unavailable \(connection refused\)"):
        await crm.call_tool("search", {}, meta=None, on_progress=None)
    assert crm.calls == []
    crm.health = Health(HealthState.DEGRADED, "connected, but its listing breaks a bound")
    await crm.call_tool("search", {}, meta=None, on_progress=None)
    await crm.close()
    assert crm.health.state is HealthState.STOPPED
    with pytest.raises(BackendUnavailable):
        await crm.call_tool("search", {}, meta=None, on_progress=None)


async def test_listing_changes_and_resource_updates_reach_the_listeners() -> None:
    listings: list[tuple[str, Listing]] = []
    updates: list[tuple[str, str]] = []

    async def on_listing(name: str, listing: Listing) -> None:
        listings.append((name, listing))

    async def on_resource_updated(name: str, uri: str) -> None:
        updates.append((name, uri))

    crm = FakeConnector("crm", tools=[tool("search")], on_listing=on_listing, on_resource_updated=on_resource_updated)
    async with anyio.create_task_group() as task_group:
        await crm.start(task_group)
    assert crm.started
    assert listings == [("crm", crm.listing)]
    changed = Listing(tools=(tool("search"), tool("merge")))
    await crm.change_listing(changed)
    assert crm.listing is changed
    assert listings[-1] == ("crm", changed)
    await crm.resource_updated("crm://accounts")
    assert updates == [("crm", "crm://accounts")]


def test_watching_counts_each_block() -> None:
    crm = FakeConnector("crm")
    with crm.watching(["a", "b"]):
        with crm.watching(["b", "c"]):
            assert crm.watched == {"a", "b", "c"}
        assert crm.watched == {"a", "b"}
    assert crm.watched == frozenset()
