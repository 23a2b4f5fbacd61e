"""The kill switch end to end: real gateway processes, the official `mcp` client over HTTP and stdio,
and `gateway agents` as an operator runs it.

An agent suspended mid-session is refused on its next request, whatever it asks (tools, resources,
prompts), on every replica within a second, while another agent keeps working; its call held for
approval ends at once with the reason; resuming serves it again on the same session. Waits are
polls with deadlines; the one-second bound is measured from the moment the command returned.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent

from gateway.front.errors import POLICY_DENIED
from harness import GatewayProcess, free_port, mcp_client, stdio_connector, write_gateway_config

#: The kill switch's promise: every process refuses a suspended agent within this long.
BOUND_SECONDS = 1.0
CALL_DEADLINE = 30.0
HOLD_POLICY = """
@id("held-echoes")
@approvers("role:supervisors")
@reason("Echoes of 'hold' wait for a supervisor.")
permit (principal, action == Action::"sink__echo", resource)
when { context.input.text == "hold" };
"""

Request = Callable[[Client], Awaitable[Any]]
#: One request of every kind an agent makes, each of which a suspension refuses.
EVERY_KIND: dict[str, Request] = {
    "tools/list": lambda client: client.list_tools(),
    "tools/call": lambda client: client.call_tool("sink__echo", {"text": "hello"}),
    "resources/list": lambda client: client.list_resources(),
    "resources/read": lambda client: client.read_resource("gateway://sink/sink://static/readme"),
    "prompts/list": lambda client: client.list_prompts(),
    "prompts/get": lambda client: client.get_prompt("sink__greet", {"name": "ada"}),
}


def configure(directory: Path, database_url: str) -> GatewayProcess:
    """A gateway before the kitchen sink whose echoes of "hold" wait for a supervisor; each process its own chain."""
    key = base64.b64encode(os.urandom(32)).decode()
    write_gateway_config(
        directory,
        {"sink": stdio_connector()},
        database_url=database_url,
        extra=(
            f'\n[approvals]\nsealing_keys = [{{ id = "k1", key = "{key}" }}]\nmax_wait = {CALL_DEADLINE}\n'
            "poll_interval = 0.1\n"
        ),
    )
    approval_dir = directory / "policies" / "approval"
    approval_dir.mkdir(parents=True, exist_ok=True)
    (approval_dir / "held.cedar").write_text(HOLD_POLICY)
    return GatewayProcess(directory, free_port())


def text_of(result: CallToolResult) -> str:
    return "\n".join(part.text for part in result.content if isinstance(part, TextContent))


async def cli(gateway: GatewayProcess, *args: str, check: bool = True) -> Any:
    """A `gateway` command run off the event loop, so the agents' sessions go on meanwhile."""
    return await anyio.to_thread.run_sync(lambda: gateway.cli(*args, check=check))


async def refusal(client: Client, request: Request = EVERY_KIND["tools/list"]) -> str | None:
    """The suspension's refusal of `request`, or None when it was served."""
    try:
        await request(client)
    except MCPError as exc:
        assert exc.error.code == POLICY_DENIED, exc.error
        return exc.error.message
    return None


async def refused_within(client: Client, since: float, bound: float = BOUND_SECONDS) -> str:
    """Poll with `tools/list` until the suspension refuses it; fails past `bound` seconds after `since`."""
    while True:
        said = await refusal(client)
        if said is not None:
            return said
        assert time.monotonic() - since < bound, f"still served {bound} s after the suspension"
        await anyio.sleep(0.02)


async def served_within(client: Client, since: float, bound: float = BOUND_SECONDS) -> None:
    while await refusal(client) is not None:
        assert time.monotonic() - since < bound, f"still refused {bound} s after the resume"
        await anyio.sleep(0.02)


async def pending_approval(gateway: GatewayProcess) -> str:
    with anyio.fail_after(CALL_DEADLINE):
        while True:
            listed = await cli(gateway, "approvals", "list", "--state", "pending", "--json")
            found = [json.loads(line) for line in listed.stdout.splitlines()]
            if found:
                assert len(found) == 1, found
                return str(found[0]["id"])
            await anyio.sleep(0.1)


# -- one gateway on SQLite -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("suspension")
    gateway = configure(directory, f"sqlite+aiosqlite:///{directory / 'gateway.db'}")
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.mark.anyio
async def test_an_agent_suspended_mid_session_is_refused_everything_and_its_held_call_ends_with_the_reason(
    gateway: GatewayProcess,
) -> None:
    rogue, good = gateway.create_key("rogue-bot"), gateway.create_key("good-bot")
    held: list[CallToolResult] = []
    ended = anyio.Event()
    async with (
        mcp_client(gateway.url, rogue, mode="legacy") as rogue_client,  # a session open before the suspension
        mcp_client(gateway.url, good) as good_client,
        anyio.create_task_group() as group,
    ):
        assert text_of(await rogue_client.call_tool("sink__echo", {"text": "before"})) == "before"

        async def held_call() -> None:
            with anyio.fail_after(CALL_DEADLINE):
                held.append(await rogue_client.call_tool("sink__echo", {"text": "hold"}))
            ended.set()

        group.start_soon(held_call)
        approval_id = await pending_approval(gateway)

        suspended = await cli(gateway, "agents", "suspend", "rogue-bot", "--reason", "runaway loop", "--by", "maria")
        since = time.monotonic()
        said = await refused_within(rogue_client, since)

        lines = suspended.stdout.splitlines()
        assert lines[0].startswith("Suspended agent 'rogue-bot': suspended by maria at ")
        assert lines[0].endswith(": runaway loop.")
        assert lines[1] == (
            "Every request of it is refused on every gateway process; its API keys are kept for a resume."
        )
        assert lines[2] == f"Cancelled its 1 pending approval(s), with the reason: {approval_id}"
        assert said.startswith("denied: agent 'rogue-bot' is suspended by maria at ")
        assert said.endswith(
            ": runaway loop. Every request of this agent is refused until an operator resumes it; "
            "ask the gateway's operators."
        )
        for kind, request in EVERY_KIND.items():
            assert await refusal(rogue_client, request) == said, kind
        # Its held call ended at once, with who cancelled it and why.
        with anyio.fail_after(CALL_DEADLINE):
            await ended.wait()
        [result] = held
        assert result.is_error
        assert f"its approval {approval_id} was cancelled by maria at " in text_of(result)
        assert text_of(result).endswith(": runaway loop.")
        # Another agent is served as before.
        for kind, request in EVERY_KIND.items():
            assert await refusal(good_client, request) is None, kind

        listed = await cli(gateway, "agents", "list")
        [row] = [line for line in listed.stdout.splitlines() if line.startswith("rogue-bot")]
        assert row.split()[:4] == ["rogue-bot", "suspended", "1", "maria"] and row.endswith("runaway loop")
        [good_row] = [line for line in listed.stdout.splitlines() if line.startswith("good-bot")]
        assert good_row.split() == ["good-bot", "active", "1", "-", "-", "-"]
        as_json = await cli(gateway, "agents", "list", "--suspended", "--json")
        [entry] = [json.loads(line) for line in as_json.stdout.splitlines()]
        assert (entry["agent"], entry["suspended"], entry["suspended_by"], entry["reason"]) == (
            "rogue-bot",
            True,
            "maria",
            "runaway loop",
        )

        resumed = await cli(gateway, "agents", "resume", "rogue-bot", "--by", "tom", "--comment", "loop fixed")
        since = time.monotonic()
        assert resumed.stdout.startswith("Resumed agent 'rogue-bot' (it was suspended by maria at ")
        await served_within(rogue_client, since)
        # The same session goes on, with the keys and access it had.
        assert text_of(await rogue_client.call_tool("sink__echo", {"text": "after"})) == "after"

    events = (await cli(gateway, "audit", "search", "--kind", "suspension", "--json")).stdout.splitlines()
    recorded = [json.loads(line) for line in events]
    assert [(e["action"], e["agent"], e["actor"], e["reason"]) for e in reversed(recorded)][-2:] == [
        ("suspended", "rogue-bot", "maria", "runaway loop"),
        ("resumed", "rogue-bot", "tom", "loop fixed"),
    ]
    refused = await cli(gateway, "audit", "search", "--json", "--agent", "rogue-bot", "--outcome", "denied")
    assert any("is suspended by maria" in json.loads(line)["reason"] for line in refused.stdout.splitlines())


@pytest.mark.anyio
async def test_a_suspended_agent_over_stdio_is_refused_and_served_again_once_resumed(gateway: GatewayProcess) -> None:
    key = gateway.create_key("stdio-bot")
    parameters = StdioServerParameters(
        command=sys.executable, args=["-m", "gateway", "stdio", "--config", str(gateway.config_path), "--key", key]
    )
    async with Client(parameters, mode="legacy") as client:
        assert await refusal(client) is None
        await cli(gateway, "agents", "suspend", "stdio-bot", "--reason", "leaking data")
        said = await refused_within(client, time.monotonic())
        assert "agent 'stdio-bot' is suspended by " in said and said.split(". Every")[0].endswith(": leaking data")
        assert await refusal(client, EVERY_KIND["tools/call"]) == said
        await cli(gateway, "agents", "resume", "stdio-bot")
        await served_within(client, time.monotonic())


def test_suspending_a_name_never_seen_says_so_and_resuming_one_not_suspended_is_refused(
    gateway: GatewayProcess,
) -> None:
    unknown = gateway.cli("agents", "suspend", "nobody-yet", "--reason", "pre-emptive", "--by", "maria")
    assert unknown.stdout.splitlines()[-1] == (
        "No API key and no call in the audit log name 'nobody-yet': check the name. "
        "It is refused from its first request."
    )
    assert "API keys are kept" not in unknown.stdout  # it has none
    again = gateway.cli("agents", "suspend", "nobody-yet", "--reason", "twice", check=False)
    assert again.returncode == 1
    assert again.stderr.startswith("gateway: agent 'nobody-yet' is already suspended (suspended by maria at ")
    assert again.stderr.rstrip().endswith(": pre-emptive); resume it first to suspend it for another reason")
    gateway.cli("agents", "resume", "nobody-yet")
    not_suspended = gateway.cli("agents", "resume", "nobody-yet", check=False)
    assert not_suspended.returncode == 1
    assert not_suspended.stderr == "gateway: agent 'nobody-yet' is not suspended, so there is nothing to resume\n"
    no_reason = gateway.cli("agents", "suspend", "someone", "--reason", " ", check=False)
    assert no_reason.returncode == 1
    assert "give a reason for the suspension: the agent is told it with every refusal" in no_reason.stderr


def test_an_agent_suspended_before_it_connects_is_refused_from_its_first_request(gateway: GatewayProcess) -> None:
    gateway.cli("agents", "suspend", "late-bot", "--reason", "not cleared for production")
    key = gateway.create_key("late-bot")
    since = time.monotonic()

    async def first_requests() -> None:
        async with mcp_client(gateway.url, key) as client:
            said = await refused_within(client, since, bound=CALL_DEADLINE)
            assert said.split(". Every")[0].endswith(": not cleared for production")

    anyio.run(first_requests)
    gateway.cli("agents", "resume", "late-bot")


# -- two replicas on PostgreSQL --------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.anyio
async def test_a_suspension_reaches_both_replicas_within_a_second_and_ends_the_held_call_on_either(
    tmp_path: Path, postgres_url: str
) -> None:
    replicas = [configure(tmp_path / name, postgres_url) for name in ("gw-a", "gw-b")]
    first, second = replicas
    try:
        for replica in replicas:
            replica.start()
        rogue, good = first.create_key("rogue-bot"), first.create_key("good-bot")
        held: list[CallToolResult] = []
        ended = anyio.Event()
        async with (
            mcp_client(first.url, rogue, mode="legacy") as rogue_a,
            mcp_client(second.url, rogue, mode="legacy") as rogue_b,
            mcp_client(first.url, good) as good_a,
            mcp_client(second.url, good) as good_b,
            anyio.create_task_group() as group,
        ):
            for client in (rogue_a, rogue_b):
                assert await refusal(client, EVERY_KIND["tools/call"]) is None

            async def held_call() -> None:
                with anyio.fail_after(CALL_DEADLINE):
                    held.append(await rogue_b.call_tool("sink__echo", {"text": "hold"}))
                ended.set()

            group.start_soon(held_call)
            approval_id = await pending_approval(first)

            await cli(second, "agents", "suspend", "rogue-bot", "--reason", "runaway loop", "--by", "maria")
            since = time.monotonic()
            said_a, said_b = await refused_within(rogue_a, since), await refused_within(rogue_b, since)
            assert said_a == said_b and said_a.startswith("denied: agent 'rogue-bot' is suspended by maria at ")
            for kind, request in EVERY_KIND.items():
                assert await refusal(rogue_a, request) == said_a, kind
                assert await refusal(good_a, request) is None, kind
                assert await refusal(good_b, request) is None, kind
            with anyio.fail_after(CALL_DEADLINE):
                await ended.wait()
            assert held[0].is_error and f"approval {approval_id} was cancelled by maria at " in text_of(held[0])
            assert text_of(held[0]).endswith(": runaway loop.")

            await cli(first, "agents", "resume", "rogue-bot")
            since = time.monotonic()
            await served_within(rogue_a, since)
            await served_within(rogue_b, since)
    finally:
        for replica in replicas:
            replica.stop()
