"""The gateway serves before its backends are up: start-up, `/readyz` and policies while they start.

`gateway serve` starts its backends in the background once storage, audit and policies are ready.
A backend still in its first connection attempt is `starting` on `/readyz`, and its tools are
unknown to agents; when it lists, the clients listening are told (`tools/list_changed`), and its
tools are served only under a policy set validated with them: a forbid naming one is in force on
the very first call, and so is an approval policy.

The backends here are real subprocesses behind a gate file (`backends/gated.py`): the test
decides when a backend finishes starting, or never lets it.
"""

from __future__ import annotations

import base64
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from harness import (
    TESTS,
    GatewayProcess,
    eventually,
    free_port,
    mcp_client,
    stdio_connector,
    wait_until,
    write_gateway_config,
)

pytestmark = pytest.mark.anyio

GATED = TESTS / "backends" / "gated.py"
#: Generous for a shared machine: how long a gateway and an SDK backend may take to come up under test load.
STARTUP_DEADLINE = 30.0


def gated_connector(gate: Path, *, connect_timeout: float, markers: Path) -> str:
    return (
        f'kind = "mcp-stdio"\ncommand = ["{sys.executable}", "{GATED}", "{gate}"]\n'
        f'env = {{ KITCHEN_SINK_MARKERS = "{markers}" }}\nconnect_timeout = {connect_timeout}\n'
    )


def text_of(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def refusal(client: Any, tool: str, arguments: dict[str, Any]) -> MCPError:
    with pytest.raises(MCPError) as refused:
        await client.call_tool(tool, arguments)
    return refused.value


def unknown(error: MCPError, tool: str) -> bool:
    return "unknown tool" in error.error.message.lower() and tool in error.error.message


async def test_a_backend_hanging_in_its_handshake_holds_nothing_up(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    connect_timeout = 8.0
    write_gateway_config(
        tmp_path,
        {
            "live": stdio_connector(),
            "hung": gated_connector(tmp_path / "never-opened", connect_timeout=connect_timeout, markers=markers),
        },
    )
    gateway = GatewayProcess(tmp_path, free_port())
    key = gateway.create_key("agent")
    began = time.monotonic()
    gateway.start(wait_ready=False)
    try:
        wait_until(gateway.serving, timeout=STARTUP_DEADLINE, what="the gateway to serve")
        ready = gateway.readyz()
        assert ready["backends"]["hung"]["state"] == "starting"
        assert ready["backends"]["hung"]["detail"] == "first connection attempt under way"

        # `healthy` once its listing is taken in: its tools are served from then on.
        await eventually(
            lambda: gateway.readyz()["backends"]["live"]["state"] == "healthy", what="the live backend to list"
        )
        async with mcp_client(gateway.url, key) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "live__echo" in names and not any(name.startswith("hung__") for name in names)
            assert text_of(await client.call_tool("live__echo", {"text": "here"})) == "here"
            assert unknown(await refusal(client, "hung__echo", {"text": "x"}), "hung__echo")
        # Served while the other backend is still in its handshake, long before its connect_timeout.
        assert gateway.readyz()["backends"]["hung"]["state"] == "starting"
        assert time.monotonic() - began < connect_timeout
        assert gateway.readyz()["status"] == "starting"

        gave_up = await eventually(
            lambda: (r := gateway.readyz())["backends"]["hung"]["state"] != "starting" and r,
            timeout=connect_timeout + STARTUP_DEADLINE,
            what="the hanging backend's first attempt to end",
        )
        assert gave_up["status"] == "degraded"
        assert gave_up["backends"]["hung"]["state"] == "unhealthy"
        assert gave_up["backends"]["hung"]["detail"] == f"no answer within connect_timeout {connect_timeout:g}s"
        assert gave_up["backends"]["live"]["state"] == "healthy"
        async with mcp_client(gateway.url, key) as client:
            assert not any(tool.name.startswith("hung__") for tool in (await client.list_tools()).tools)
            assert unknown(await refusal(client, "hung__echo", {"text": "x"}), "hung__echo")
            assert text_of(await client.call_tool("live__echo", {"text": "still"})) == "still"
    finally:
        gateway.stop()


POLICIES = {
    "access.cedar": """
@id("everything")
permit (principal, action, resource);

@id("no-secrets-to-late")
@reason("The late backend never gets secrets.")
forbid (principal, action == Action::"late__show_arguments", resource)
when { context.input has value && context.input.value == "secret" };
"""
}
APPROVAL_POLICIES = {
    "approval.cedar": """
@id("late-asks-first")
@approvers("role:reviewers")
@reason("A person looks at what the late backend is asked to show.")
permit (principal, action == Action::"late__show_arguments", resource)
when { context.input has value && context.input.value == "held" };
"""
}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_slow_backend_joins_under_every_policy_naming_its_tools(tmp_path: Path, mode: str) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    gate = tmp_path / "late-may-start"
    sealing = base64.b64encode(os.urandom(32)).decode()
    write_gateway_config(
        tmp_path,
        {"live": stdio_connector(), "late": gated_connector(gate, connect_timeout=60, markers=markers)},
        policies=POLICIES,
        extra=f'\n[approvals]\nsealing_keys = [{{ id = "k1", key = "{sealing}" }}]\nmax_wait = 0\n',
    )
    approval_dir = tmp_path / "policies" / "approval"
    approval_dir.mkdir()
    for name, body in APPROVAL_POLICIES.items():
        (approval_dir / name).write_text(body)
    gateway = GatewayProcess(tmp_path, free_port())
    key = gateway.create_key("agent")
    gateway.start(wait_ready=False)
    try:
        wait_until(gateway.serving, timeout=STARTUP_DEADLINE, what="the gateway to serve")
        # The other backend listed (it is `healthy` once its tools are served): the next change is the late one's.
        ready = wait_until(
            lambda: (r := gateway.readyz())["backends"]["live"]["state"] == "healthy" and r,
            what="the live backend to list",
        )
        assert ready["status"] == "starting"
        assert ready["backends"]["late"]["state"] == "starting"
        # The policies naming the late backend's tool wait for it; the rest are in force.
        waiting = " ".join(ready["checks"]["policies"]["waiting"])
        assert "no-secrets-to-late" in waiting and "late-asks-first" in waiting

        changed = anyio.Event()

        async def on_message(message: Any) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                changed.set()

        outcomes: list[str] = []
        async with mcp_client(gateway.url, key, mode=mode, message_handler=on_message) as client:
            assert not any(tool.name.startswith("late__") for tool in (await client.list_tools()).tools)

            async def hammer(stop: anyio.Event) -> None:
                """Ask the late tool for what the policies refuse or hold, without pause, across its arrival."""
                turn = 0
                while not stop.is_set():
                    value = ("secret", "held")[turn % 2]
                    turn += 1
                    try:
                        result = await client.call_tool(
                            "late__show_arguments", {"value": value, "marker": f"{value}-{turn}"}
                        )
                        outcomes.append(f"{value}: result: {text_of(result)}")
                    except MCPError as exc:
                        outcomes.append(f"{value}: error: {exc.error.message}")

            async def listen() -> None:
                if mode == "legacy":
                    await changed.wait()
                    return
                async with client.listen(tools_list_changed=True) as subscription:
                    listening.set()
                    async for _event in subscription:
                        changed.set()
                        return

            listening = anyio.Event()
            stop = anyio.Event()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(hammer, stop)
                tasks.start_soon(listen)
                if mode != "legacy":
                    await listening.wait()
                await eventually(lambda: len(outcomes) >= 4, what="calls before the backend lists")
                gate.write_text("open")
                with anyio.fail_after(STARTUP_DEADLINE):
                    await changed.wait()
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert {"late__echo", "late__show_arguments"} <= names
                arrived = len(outcomes)
                await eventually(lambda: len(outcomes) >= arrived + 4, what="calls after the backend listed")
                stop.set()

            assert text_of(await client.call_tool("late__echo", {"text": "joined"})) == "joined"
            allowed = await client.call_tool("late__show_arguments", {"value": "plain", "marker": "plain"})
            assert not allowed.is_error

        # Nothing the policies refuse or hold ever reached the backend, before, during or after its arrival.
        assert sorted(path.name for path in markers.iterdir()) == ["plain.called"], outcomes
        # Unknown until the tool appears, then refused or held by the policies naming it from the first call on.
        arrival = next(i for i, outcome in enumerate(outcomes) if "unknown tool" not in outcome.lower())
        assert arrival >= 4 and all("unknown tool" in outcome.lower() for outcome in outcomes[:arrival]), outcomes
        for outcome in outcomes[arrival:]:
            if outcome.startswith("secret:"):
                assert outcome == "secret: error: denied: The late backend never gets secrets.", outcomes
            else:
                assert "approv" in outcome.lower(), outcomes
    finally:
        gateway.stop()
