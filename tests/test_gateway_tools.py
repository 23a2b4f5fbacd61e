"""The gateway's own tools, as agents meet them: `gateway__approval_status` over real HTTP.

They are governed like any backend's tool (listed and callable only where a policy permits,
audited), and they only ever speak of the calling agent's own held calls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

from gateway.approvals import ApprovalState
from gateway.catalog.builtin import GATEWAY_TOOLS_LISTING
from harness import mcp_client, running_gateway, stdio_connector
from test_approvals_e2e import NO_WAIT, PAY, approval_id_in, assert_paid_once, held_world, pay, text_of

pytestmark = pytest.mark.anyio

STATUS = "gateway__approval_status"


async def status_of(client: Client, approval_id: str) -> tuple[CallToolResult, dict[str, Any]]:
    result = await client.call_tool(STATUS, {"id": approval_id})
    return result, dict(result.structured_content or {})


async def test_an_agent_follows_its_held_call_from_pending_to_run(tmp_path: Path) -> None:
    with held_world(tmp_path) as world:
        async with mcp_client(world.gateway.url, world.agent_key) as client:
            approval_id = approval_id_in(await pay(client, meta=NO_WAIT))
            result, status = await status_of(client, approval_id)
            assert not result.is_error
            assert status["state"] == "pending" and status["approvers"] == ["role:finance-managers"]
            assert status["quorum"] == 1 and status["approvals"] == 0 and status["tool"] == PAY
            assert "is pending" in text_of(result) and "Nothing has run" in text_of(result)

            await world.decide("approve", approval_id, "maria")
            result, status = await status_of(client, approval_id)
            assert status["state"] == "approved" and status["approvals"] == 1
            assert "has not run yet" in text_of(result) and "Repeat the identical call" in text_of(result)
            assert world.payments_run() == []  # asking never runs it

            assert_paid_once(await pay(client, meta=NO_WAIT))
            result, status = await status_of(client, approval_id)
            assert status["state"] == "succeeded" and "does not run again" in text_of(result)
        assert len(world.payments_run()) == 1
        asked = world.gateway.cli("audit", "search", "--json", "--tool", STATUS)
        assert len(asked.stdout.splitlines()) == 3  # every question is on the record, like any call


async def test_a_denial_names_who_denied_it_and_why(tmp_path: Path) -> None:
    with held_world(tmp_path) as world:
        async with mcp_client(world.gateway.url, world.agent_key) as client:
            approval_id = approval_id_in(await pay(client, meta=NO_WAIT))
            await world.decide("deny", approval_id, "maria", "--comment", "duplicate invoice")
            result, status = await status_of(client, approval_id)
        assert status["state"] == "denied" and status["deniedBy"] == "maria"
        assert status["comment"] == "duplicate invoice"
        assert "was not run" in text_of(result) and "denied by maria" in text_of(result)


async def test_another_agents_approval_is_as_unknown_as_a_made_up_id(tmp_path: Path) -> None:
    with held_world(tmp_path) as world:
        other_key = world.gateway.create_key("another-bot")
        async with mcp_client(world.gateway.url, world.agent_key) as client:
            approval_id = approval_id_in(await pay(client, meta=NO_WAIT))
        async with mcp_client(world.gateway.url, other_key) as other:
            foreign = await other.call_tool(STATUS, {"id": approval_id})
            made_up = await other.call_tool(STATUS, {"id": "no-such-approval"})
        assert foreign.is_error and made_up.is_error
        assert "No held call of yours" in text_of(foreign) and approval_id in text_of(foreign)
        assert text_of(foreign).replace(approval_id, "ID") == text_of(made_up).replace("no-such-approval", "ID")


async def test_the_tool_is_listed_and_callable_only_where_a_policy_permits_it(tmp_path: Path) -> None:
    policies = {
        "access.cedar": '@id("list")\npermit (principal, action == Action::"list_tools", resource);\n'
        '@id("echo")\npermit (principal, action == Action::"sink__echo", resource);\n'
    }
    with running_gateway(tmp_path, {"sink": stdio_connector()}, policies=policies) as gateway:
        key = gateway.create_key("some-bot")
        async with mcp_client(gateway.url, key) as client:
            listed = {tool.name for tool in (await client.list_tools()).tools}
            assert "sink__echo" in listed and STATUS not in listed
            with pytest.raises(MCPError, match=f"unknown tool '{STATUS}'"):
                await client.call_tool(STATUS, {"id": "anything"})


async def test_without_approvals_configured_it_says_nothing_is_held(tmp_path: Path) -> None:
    with running_gateway(tmp_path, {"sink": stdio_connector()}) as gateway:
        async with mcp_client(gateway.url, gateway.create_key("some-bot")) as client:
            result = await client.call_tool(STATUS, {"id": "anything"})
        assert result.is_error and "holds no calls for approval" in text_of(result)


def test_the_listed_states_are_the_approval_states() -> None:
    tool = next(tool for tool in GATEWAY_TOOLS_LISTING.tools if tool["name"] == "approval_status")
    listed = tool["outputSchema"]["properties"]["state"]["enum"]
    assert listed == [state.value for state in ApprovalState], json.dumps(listed)
