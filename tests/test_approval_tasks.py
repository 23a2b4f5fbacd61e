"""Held calls as tasks (the MCP tasks extension, 2026-07-28), end to end with the official client.

The client here declares `io.modelcontextprotocol/tasks` the way the SDK's extension hooks let a
host do it (the SDK ships the hooks, not the extension): a `ResultClaim` for `resultType: "task"`
and `tasks/get` / `tasks/cancel` requests of its own. Everything else is real: the gateway and
the finance server run as processes, and approvers decide with the `gateway` command line.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientSession
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND, Request, RequestParams, Result
from pydantic import ConfigDict

from harness import gateway_command, mcp_client
from test_approvals_e2e import CALL_DEADLINE, INVOICE, PAY, World, assert_paid_once, held_world, text_of

pytestmark = pytest.mark.anyio

TASKS = "io.modelcontextprotocol/tasks"


class TaskParams(RequestParams):
    task_id: str


class TasksGet(Request[TaskParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskParams


class TasksCancel(Request[TaskParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskParams


class TaskHandle(Result):
    """A `CreateTaskResult`: what a held call answers a client that takes tasks."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


class DetailedTask(Result):
    """A `tasks/get` answer: the task, with the call's result inline once completed."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["complete"] = "complete"
    task_id: str
    status: str
    status_message: str | None = None
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None


async def get_task(session: ClientSession, task_id: str) -> DetailedTask:
    return await session.send_request(TasksGet(params=TaskParams(task_id=task_id)), DetailedTask)


async def poll_until_done(session: ClientSession, task_id: str) -> DetailedTask:
    with anyio.fail_after(CALL_DEADLINE):
        while True:
            task = await get_task(session, task_id)
            if task.status != "working":
                return task
            await anyio.sleep(0.05)  # the test's own poll interval, not a wait standing in for an event


class TasksExtension(ClientExtension):
    """What a host that takes tasks does: claim `resultType: "task"` and poll it to its end."""

    identifier = TASKS

    def __init__(self) -> None:
        self.handles: list[TaskHandle] = []

    def claims(self) -> list[ResultClaim[Any]]:
        async def resolve(handle: TaskHandle, ctx: ClaimContext) -> CallToolResult:
            self.handles.append(handle)
            task = await poll_until_done(ctx.session, handle.task_id)
            assert task.result is not None, task
            return CallToolResult.model_validate(task.result)

        return [ResultClaim(result_type="task", model=TaskHandle, resolve=resolve)]


async def held_as_task(client: Client) -> TaskHandle:
    with anyio.fail_after(CALL_DEADLINE):
        handle = await client.session.call_tool(PAY, dict(INVOICE), allow_claimed=True)
    assert isinstance(handle, TaskHandle), handle
    return handle


def tasks_client(world: World, extension: ClientExtension | None = None) -> Any:
    return mcp_client(world.gateway.url, world.agent_key, extensions=[extension or TasksExtension()])


async def test_a_held_call_becomes_a_task_at_once_and_completes_with_the_result_once_approved(
    tmp_path: Path,
) -> None:
    with held_world(tmp_path) as world:
        async with tasks_client(world) as client:
            assert client.protocol_version == "2026-07-28"
            assert TASKS in (client.server_capabilities.extensions or {})  # advertised by server/discover
            handle = await held_as_task(client)
            assert handle.status == "working"
            message = handle.status_message or ""
            assert handle.task_id in message and "finance-managers" in message
            assert handle.ttl_ms == 3_600_000  # the approval's expiry, PT1H
            polled = await get_task(client.session, handle.task_id)
            assert polled.status == "working" and polled.result is None
            assert world.payments_run() == []  # nothing ran while people decide

            await world.decide("approve", handle.task_id, "maria")
            done = await poll_until_done(client.session, handle.task_id)
            assert done.status == "completed"
            payment = assert_paid_once(CallToolResult.model_validate(done.result))
            again = await get_task(client.session, handle.task_id)
            assert again.status == "completed" and again.result == done.result and payment in json.dumps(again.result)
        assert len(world.payments_run()) == 1


async def test_a_host_that_takes_tasks_gets_the_final_result_from_call_tool(tmp_path: Path) -> None:
    extension = TasksExtension()
    with held_world(tmp_path) as world:
        async with tasks_client(world, extension) as client:
            answered: list[CallToolResult] = []
            async with anyio.create_task_group() as group:

                async def agent() -> None:
                    with anyio.fail_after(CALL_DEADLINE):
                        answered.append(await client.call_tool(PAY, dict(INVOICE)))

                group.start_soon(agent)
                approval_id = await world.pending_approval()
                await world.decide("approve", approval_id, "maria")
            assert_paid_once(answered[0])
            assert [handle.task_id for handle in extension.handles] == [approval_id]


async def test_a_denied_task_completes_with_a_tool_error_naming_the_approver_and_comment(tmp_path: Path) -> None:
    with held_world(tmp_path) as world:
        async with tasks_client(world) as client:
            handle = await held_as_task(client)
            await world.decide("deny", handle.task_id, "maria", "--comment", "vendor not verified")
            done = await poll_until_done(client.session, handle.task_id)
        assert done.status == "completed" and done.result is not None
        result = CallToolResult.model_validate(done.result)
        assert result.is_error
        assert "denied by maria" in text_of(result) and "vendor not verified" in text_of(result)
        assert world.payments_run() == []


async def test_the_agent_withdraws_its_task_and_the_call_never_runs(tmp_path: Path) -> None:
    with held_world(tmp_path) as world:
        async with tasks_client(world) as client:
            handle = await held_as_task(client)
            await client.session.send_request(TasksCancel(params=TaskParams(task_id=handle.task_id)), Result)
            done = await get_task(client.session, handle.task_id)
            assert done.status == "cancelled" and done.result is None
            shown = json.loads(await world.cli("approvals", "show", handle.task_id, "--json"))
            assert shown["state"] == "cancelled"
            refused = world.gateway.cli(
                "approvals", "approve", handle.task_id, "--user-key", world.approvers["maria"], check=False
            )
            assert refused.returncode != 0 and "already cancelled" in refused.stderr  # too late to approve it
        assert world.payments_run() == []


async def test_a_task_is_unknown_to_other_agents_and_to_unknown_ids(tmp_path: Path) -> None:
    with held_world(tmp_path) as world:
        other_key = world.gateway.create_key("another-bot")
        async with tasks_client(world) as client:
            handle = await held_as_task(client)
            with pytest.raises(MCPError) as unknown:
                await get_task(client.session, "01890000-0000-7000-8000-000000000000")
            assert unknown.value.error.code == INVALID_PARAMS and "no task" in unknown.value.error.message
        async with mcp_client(world.gateway.url, other_key, extensions=[TasksExtension()]) as other:
            with pytest.raises(MCPError) as foreign:
                await get_task(other.session, handle.task_id)
            assert foreign.value.error.code == INVALID_PARAMS and "no task" in foreign.value.error.message
            with pytest.raises(MCPError):
                await other.session.send_request(TasksCancel(params=TaskParams(task_id=handle.task_id)), Result)
        shown = json.loads(await world.cli("approvals", "show", handle.task_id, "--json"))
        assert shown["state"] == "pending"  # the other agent's cancel changed nothing


async def test_a_client_without_the_extension_never_gets_a_task(tmp_path: Path) -> None:
    with held_world(tmp_path) as world:
        async with mcp_client(world.gateway.url, world.agent_key, mode="legacy") as legacy:
            answered = await legacy.call_tool(PAY, dict(INVOICE), meta={"io.autonomy-gateway/no-wait": True})
            assert answered.is_error and "held for approval" in text_of(answered)
            with pytest.raises(MCPError) as missing:
                await get_task(legacy.session, "anything")
            assert missing.value.error.code == METHOD_NOT_FOUND


async def test_a_task_outlives_a_killed_gateway_and_completes_after_restart(tmp_path: Path) -> None:
    with held_world(tmp_path) as world:
        gateway = world.gateway
        async with tasks_client(world) as client:
            handle = await held_as_task(client)
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGKILL)
        gateway.process.wait(10)
        gateway.start()
        await world.decide("approve", handle.task_id, "maria")
        async with tasks_client(world) as client:  # a new connection: nothing of the first one is left
            done = await poll_until_done(client.session, handle.task_id)
        assert done.status == "completed"
        assert_paid_once(CallToolResult.model_validate(done.result))
        assert len(world.payments_run()) == 1


async def test_over_stdio_a_held_call_is_a_task_too_and_completes_once_approved(tmp_path: Path) -> None:
    with held_world(tmp_path) as world:
        command = gateway_command("stdio", "--config", str(world.gateway.config_path), "--key", world.agent_key)
        params = StdioServerParameters(command=command[0], args=command[1:])
        async with Client(stdio_client(params), extensions=[TasksExtension()]) as client:
            assert client.protocol_version == "2026-07-28"
            handle = await held_as_task(client)
            assert handle.status == "working" and (await get_task(client.session, handle.task_id)).status == "working"
            await world.decide("approve", handle.task_id, "maria")
            done = await poll_until_done(client.session, handle.task_id)
        assert done.status == "completed"
        assert_paid_once(CallToolResult.model_validate(done.result))
        assert len(world.payments_run()) == 1
