"""The pipeline in-process: real Cedar policies, a real SQLite audit log, an in-memory backend.

These cover what an agent and an auditor notice of one request (what reaches the backend, what
the agent is told, what the audit log holds) without a subprocess or a socket, so each runs in
milliseconds; the same behaviour over the wire is covered by the `test_gateway_*` files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from fake_connector import FakeCall
from gateway.calls import REASONING_META_KEY, Call, Origin
from gateway.connectors.base import Health, HealthState
from gateway.errors import (
    BackendTimeout,
    BackendUnavailable,
    GatewayNotReady,
    PolicyDenied,
    ReasoningRequired,
    UnknownPrompt,
    UnknownTool,
    UnusableArguments,
)
from pipeline_world import INTERN, SALES, World, pipeline_world

pytestmark = pytest.mark.anyio


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with pipeline_world(tmp_path) as world:
        yield world


async def test_an_allowed_call_reaches_the_backend_without_the_gateways_own_meta(world: World) -> None:
    meta = {REASONING_META_KEY: "find the customer", "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}

    result = await world.pipeline.call_tool(world.call(SALES, "crm__search", {"q": "acme"}, meta))

    assert result["content"][0]["text"] == '{"q": "acme"}'
    [received] = world.crm.calls
    assert received == FakeCall("tools/call", "search", {"q": "acme"}, received.meta)
    assert received.meta is not None and REASONING_META_KEY not in received.meta
    [entry] = await world.entries(1)
    assert (entry.decision, entry.outcome_name) == ("allow", "ok")
    assert entry.call["reasoning"] == "find the customer"
    assert (entry.call["connector"], entry.call["original_name"]) == ("crm", "search")


async def test_a_denied_call_never_reaches_the_backend_and_says_the_policys_reason(world: World) -> None:
    with pytest.raises(PolicyDenied, match="denied: no access policy allows") as denied:
        await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "customer-7"}))

    assert denied.value.policy_ids == ()
    assert world.crm.calls == []
    [entry] = await world.entries(1)
    assert (entry.decision, entry.outcome_name) == ("deny", "denied")


async def test_a_tool_the_agent_may_never_call_is_as_unknown_as_one_that_does_not_exist(world: World) -> None:
    with pytest.raises(UnknownTool) as hidden:
        await world.pipeline.call_tool(world.call(INTERN, "crm__export"))
    with pytest.raises(UnknownTool) as missing:
        await world.pipeline.call_tool(world.call(INTERN, "crm__nothing"))

    assert str(hidden.value).replace("export", "X") == str(missing.value).replace("nothing", "X")
    assert world.crm.calls == []
    hidden_entry, missing_entry = await world.entries(2)
    assert (hidden_entry.decision, hidden_entry.outcome_name) == ("deny", "denied")
    assert (missing_entry.decision, missing_entry.outcome_name) == ("refused", "refused")


async def test_arguments_that_break_the_schema_are_for_the_agent_to_fix_not_a_denial(world: World) -> None:
    with pytest.raises(UnusableArguments, match="Correct them"):
        await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": 7}))

    assert world.crm.calls == []
    [entry] = await world.entries(1)
    assert (entry.decision, entry.outcome_name) == ("invalid_arguments", "invalid_arguments")


async def test_a_tool_that_needs_reasoning_refuses_a_call_without_it(world: World) -> None:
    with pytest.raises(ReasoningRequired, match="needs your reasoning"):
        await world.pipeline.call_tool(world.call(SALES, "crm__search", {"q": "acme"}))

    assert world.crm.calls == []
    [entry] = await world.entries(1)
    assert entry.outcome_name == "refused"


@pytest.mark.parametrize(
    ("failure", "outcome"),
    [
        (BackendTimeout("backend 'crm' did not answer within 30s"), "timeout"),
        (BackendUnavailable("backend 'crm' is restarting"), "backend_error"),
    ],
)
async def test_a_backend_failure_reaches_the_agent_and_the_audit_log(
    world: World, failure: Exception, outcome: str
) -> None:
    world.crm.tool_results["delete"] = failure
    with pytest.raises(type(failure), match=str(failure)):
        await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-1"}))

    [entry] = await world.entries(1)
    assert (entry.decision, entry.outcome_name) == ("allow", outcome)
    assert entry.outcome is not None and entry.outcome["error"]["type"] == type(failure).__name__


async def test_a_call_cancelled_while_the_backend_works_is_recorded_as_cancelled(world: World) -> None:
    started = anyio.Event()

    async def slow(call: FakeCall) -> dict[str, Any]:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    world.crm.handler = slow
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(world.pipeline.call_tool, world.call(SALES, "crm__delete", {"id": "test-1"}))
        await started.wait()
        tasks.cancel_scope.cancel()

    [entry] = await world.entries(1)
    assert entry.outcome_name == "cancelled"


async def test_a_down_backend_is_refused_by_its_connector_and_recorded(world: World) -> None:
    world.crm.health = Health(HealthState.UNHEALTHY, "connection refused")
    with pytest.raises(BackendUnavailable):
        await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-1"}))

    [entry] = await world.entries(1)
    assert (entry.decision, entry.outcome_name) == ("allow", "backend_error")


async def test_without_valid_policies_every_request_is_refused_as_not_ready(tmp_path: Path) -> None:
    async with pipeline_world(tmp_path, policies=None) as world:
        with pytest.raises(GatewayNotReady, match="not ready"):
            await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-1"}))
        with pytest.raises(GatewayNotReady):
            await world.pipeline.list_tools(Origin(SALES))

        assert world.crm.calls == []
        call_entry, listing_entry = await world.entries(2)
    assert (call_entry.decision, call_entry.outcome_name) == ("refused", "refused")
    assert listing_entry.call["method"] == "tools/list"


async def test_listings_show_only_what_the_agent_may_use(world: World) -> None:
    sales = await world.pipeline.list_tools(Origin(SALES))
    intern = await world.pipeline.list_tools(Origin(INTERN))

    assert [t["name"] for t in sales.tools] == ["crm__search", "crm__delete"]
    assert [t["name"] for t in intern.tools] == ["crm__search"]
    assert [p["name"] for p in await world.pipeline.list_prompts(Origin(INTERN))] == []


async def test_prompts_and_resources_take_the_same_stages(world: World) -> None:
    prompt = await world.pipeline.get_prompt(Call.of("prompts/get", Origin(SALES), "crm__summary", {"topic": "q3"}))
    read = await world.pipeline.read_resource(Call.of("resources/read", Origin(SALES), "gateway://crm/crm://accounts"))
    with pytest.raises(UnknownPrompt):
        await world.pipeline.get_prompt(Call.of("prompts/get", Origin(INTERN), "crm__summary"))
    with pytest.raises(PolicyDenied):
        await world.pipeline.read_resource(Call.of("resources/read", Origin(INTERN), "gateway://crm/crm://accounts"))

    assert prompt["messages"] == []
    assert read["contents"][0]["uri"] == "gateway://crm/crm://accounts"
    assert [(c.method, c.name) for c in world.crm.calls] == [
        ("prompts/get", "summary"),
        ("resources/read", "crm://accounts"),
    ]
    entries = await world.entries(4)
    assert [(e.call["method"], e.outcome_name) for e in entries] == [
        ("prompts/get", "ok"),
        ("resources/read", "ok"),
        ("prompts/get", "denied"),
        ("resources/read", "denied"),
    ]
