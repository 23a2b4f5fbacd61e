"""Held calls as tasks: the MCP tasks extension (`io.modelcontextprotocol/tasks`, 2026-07-28).

A client that declares the extension on a `tools/call` gets a held call back at once as a task
(`resultType: "task"`) instead of waiting or hearing it is pending. The task is the approval:
its id is the approval's id, stored before the answer is sent, so `tasks/get` resolves on any
gateway process sharing the database, before and after a restart. Polling it:

- while people decide, or while the approved call runs, it is `working`, and its message says
  who must decide and when it expires;
- the first poll after approval runs the call (once, through every stage, like the repeat of a
  held call) and answers `completed` with the backend's result inline;
- denied, expired, or unknown after a crash: `completed` with a tool error that says why, the
  same text a repeated call would get; withdrawn or cancelled: `cancelled`.

A task is the calling agent's alone: another agent asking for its id hears that no such task
exists. `tasks/cancel` withdraws a call still pending; `tasks/update` has nothing to take, as
the gateway never asks the client for input on a task.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mcp.shared.exceptions import MCPError
from mcp.types import RequestParams
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ConfigDict, Field

from gateway.approvals import Approval, ApprovalState
from gateway.calls import Call, Origin
from gateway.connectors.base import JsonObject
from gateway.errors import ApprovalPending, ApprovalRefused, GatewayError
from gateway.front.errors import tool_call_answer
from gateway.front.results import for_client
from gateway.holding import TASKS_EXTENSION, HeldTask, declares_tasks, task_message
from gateway.pipeline import Pipeline

#: What `server/discover` advertises: the extension has no settings.
ADVERTISED: dict[str, dict[str, Any]] = {TASKS_EXTENSION: {}}


class TaskParams(RequestParams):
    """`tasks/get` and `tasks/cancel`: the task's id."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    task_id: str = Field(alias="taskId")


class TaskUpdateParams(TaskParams):
    """`tasks/update`: answers to input requests, which a held call never makes."""

    input_responses: dict[str, Any] = Field(default_factory=dict, alias="inputResponses")


class HeldTasks:
    """Answers the tasks extension's requests about held calls, from the approvals in the database."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def answer(self, call: Call, error: GatewayError) -> JsonObject | MCPError:
        """What a `tools/call` that failed with `error` answers: a task for a held call whose client
        takes tasks, else the tool result or JSON-RPC error every client gets."""
        if isinstance(error, ApprovalPending) and error.approval_id is not None and declares_tasks(call):
            held = await self._pipeline.held_task(call.origin, error.approval_id, run=False)
            return {"resultType": "task", **self._task(held)}
        return tool_call_answer(error)

    async def get(self, origin: Origin, task_id: str) -> JsonObject:
        _require_modern(origin)
        held = await self._pipeline.held_task(origin, task_id)
        return {"resultType": "complete", **self._task(held, detailed=True, protocol=origin.protocol_version)}

    async def cancel(self, origin: Origin, task_id: str) -> JsonObject:
        _require_modern(origin)
        await self._pipeline.withdraw_task(origin, task_id)
        return {"resultType": "complete"}

    async def update(self, origin: Origin, task_id: str) -> JsonObject:
        """Acknowledged and ignored, as the extension says of responses to requests never made."""
        _require_modern(origin)
        await self._pipeline.held_task(origin, task_id, run=False)  # an unknown id is still an error
        return {"resultType": "complete"}

    @staticmethod
    def _task(held: HeldTask, *, detailed: bool = False, protocol: str | None = None) -> JsonObject:
        approval, outcome = held.approval, held.outcome
        task: JsonObject = {
            "taskId": approval.id,
            "status": "working",
            "statusMessage": task_message(approval),
            "createdAt": _iso(approval.created_at),
            "lastUpdatedAt": _iso(_last_change(approval)),
            # While people decide, the task lives until the approval expires; an outcome is kept.
            "ttlMs": _ttl_ms(approval) if outcome is None else None,
            "pollIntervalMs": max(1, round(held.poll_interval * 1000)),
        }
        if isinstance(outcome, ApprovalRefused):
            task["statusMessage"] = str(outcome)
            if approval.state is ApprovalState.CANCELLED:
                task["status"] = "cancelled"
            else:
                task["status"] = "completed"
                if detailed:
                    task["result"] = _as_result(tool_call_answer(outcome))
        elif outcome is not None:
            task["status"] = "completed"
            if detailed:
                task["result"] = for_client(outcome, protocol or "")
        return task


def _require_modern(origin: Origin) -> None:
    """Tasks exist from 2026-07-28 on; an older session's `tasks/*` is a method it does not have."""
    if origin.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        raise MCPError(code=METHOD_NOT_FOUND, message="Method not found")


def _as_result(answer: JsonObject | MCPError) -> JsonObject:
    if isinstance(answer, MCPError):  # not reached: a refusal of a held call is a tool result
        raise MCPError(code=INVALID_PARAMS, message=answer.error.message)
    return {**answer, "resultType": "complete"}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _last_change(approval: Approval) -> datetime:
    moments = (approval.finished_at, approval.executed_at, approval.decided_at, approval.created_at)
    return max(moment for moment in moments if moment is not None)


def _ttl_ms(approval: Approval) -> int:
    return max(0, round((approval.expires_at - approval.created_at).total_seconds() * 1000))
