"""The tools the gateway serves itself, under its own prefix (`gateway__approval_status`).

They are a connector like any backend's, so they travel the same pipeline: Cedar decides who
may see and call them (an agent lists `gateway__approval_status` only when a policy permits
it), and every call is on the audit record. What they answer comes from the gateway's own
records, and an agent only ever hears of its own calls: another agent's approval id is as
unknown to it as one that never existed.

- `approval_status(id)`: where a held call stands (pending and who must decide, approved,
  denied by whom and why, expired, ran), for an agent that prefers to ask rather than repeat
  the call. Collecting the outcome is still the identical call's job, so nothing runs here.
- `workflow_status(workflow?)`, `workflow_note(text, workflow?)`: a workflow's shared memory
  (`coordination/workflow_tools.py`); unlike approvals, every agent in a workflow reads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any

import anyio.abc
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS

from gateway.approvals import Approval, ApprovalState, ApprovalStore, Vote
from gateway.audit.redaction import Redactor
from gateway.catalog.builtin import APPROVAL_STATUS, GATEWAY_TOOLS_LISTING, WORKFLOW_NOTE, WORKFLOW_STATUS
from gateway.connectors.base import Caller, Health, HealthState, JsonObject, Listing, ListingListener, ProgressCallback
from gateway.coordination import workflow_tools
from gateway.coordination.workflows import WorkflowStore
from gateway.errors import BackendError, UnknownApproval
from gateway.holding import ended_message
from gateway.settings.connectors import GATEWAY_TOOLS_CONNECTOR


class GatewayTools:
    """The `Connector` of the gateway's own tools (defined in `catalog/builtin.py`)."""

    def __init__(
        self,
        approvals: ApprovalStore | None,
        on_listing: ListingListener | None = None,
        *,
        workflows: WorkflowStore | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self._approvals = approvals
        self._workflows = workflows
        self._redactor = redactor or Redactor()
        self._on_listing = on_listing
        self._listing = GATEWAY_TOOLS_LISTING
        self._health = Health(HealthState.STARTING, "built in")

    @property
    def name(self) -> str:
        return GATEWAY_TOOLS_CONNECTOR

    @property
    def health(self) -> Health:
        return self._health

    @property
    def listing(self) -> Listing:
        return self._listing

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        self._health = Health(HealthState.HEALTHY, "built in")
        if self._on_listing is not None:
            await self._on_listing(self.name, self._listing)

    async def close(self) -> None:
        self._health = Health(HealthState.STOPPED, "gateway shutting down")

    async def call_tool(
        self,
        name: str,
        arguments: JsonObject,
        *,
        meta: JsonObject | None,
        on_progress: ProgressCallback | None,
        caller: Caller | None = None,
    ) -> JsonObject:
        if name not in (APPROVAL_STATUS, WORKFLOW_STATUS, WORKFLOW_NOTE):
            raise BackendError(f"Unknown tool: {name}", code=INVALID_PARAMS)
        if caller is None:
            raise BackendError(f"{name} answers only for an authenticated agent", code=INTERNAL_ERROR)
        if name != APPROVAL_STATUS:
            if self._workflows is None:
                return workflow_tools.tool_error("This gateway keeps no workflows (it has no database).")
            if name == WORKFLOW_STATUS:
                return await workflow_tools.workflow_status(self._workflows, arguments, caller)
            return await workflow_tools.workflow_note(self._workflows, self._redactor, arguments, caller)
        if self._approvals is None:
            text = "This gateway holds no calls for approval (it has no [approvals] sealing key), so none is pending."
            return {"content": [{"type": "text", "text": text}], "isError": True}
        return await self._approval_status(self._approvals, str(arguments.get("id", "")), caller.agent)

    async def read_resource(self, uri: str, *, meta: JsonObject | None) -> JsonObject:
        raise BackendError(f"Resource not found: {uri}", code=INVALID_PARAMS, data={"uri": uri})

    async def get_prompt(self, name: str, arguments: dict[str, str] | None, *, meta: JsonObject | None) -> JsonObject:
        raise BackendError(f"Unknown prompt: {name}", code=INVALID_PARAMS)

    def watching(self, uris: Iterable[str]) -> AbstractContextManager[None]:
        return nullcontext()

    # -- approval_status -------------------------------------------------------------------------

    async def _approval_status(self, store: ApprovalStore, approval_id: str, agent: str) -> JsonObject:
        try:
            approval = await store.get(approval_id)
        except UnknownApproval:
            approval = None
        if approval is None or approval.agent != agent:
            text = (
                f"No held call of yours has the approval id {approval_id!r}; check the id the held call's answer named."
            )
            return {"content": [{"type": "text", "text": text}], "isError": True}
        votes = await store.votes(approval.id)
        denial = next((vote for vote in votes if not vote.approve), None)
        status: dict[str, Any] = {
            "id": approval.id,
            "tool": approval.tool,
            "state": approval.state.value,
            "approvers": list(approval.approvers),
            "quorum": approval.quorum,
            "approvals": len({vote.user for vote in votes if vote.approve}),
            "expiresAt": _when(approval.expires_at),
            "decidedAt": _when(approval.decided_at) if approval.decided_at else None,
            "reasons": list(approval.reasons),
            "deniedBy": denial.user if denial else None,
            "comment": denial.comment if denial else None,
        }
        if denial is None and approval.ended_by is not None:  # cancelled, or an admin's denial: no vote
            status["deniedBy" if approval.state is ApprovalState.DENIED else "cancelledBy"] = approval.ended_by
            status["comment"] = approval.end_comment
        return {"content": [{"type": "text", "text": _describe(approval, status, denial)}], "structuredContent": status}


def _describe(approval: Approval, status: dict[str, Any], denial: Vote | None) -> str:
    """The status in a sentence a model acts on: what happened, and what to do next."""
    head = f"Approval {approval.id} of '{approval.tool}'"
    repeat = "Repeat the identical call (same tool and arguments) to"
    state = approval.state
    if state is ApprovalState.PENDING:
        reason = f" Reason: {approval.reasons[0]}" if approval.reasons else ""
        return (
            f"{head} is pending: it needs {approval.quorum} approval(s) from {', '.join(approval.approvers)}, has "
            f"{status['approvals']}, and expires {status['expiresAt']}.{reason} Nothing has run. {repeat} get its "
            "outcome once people decide."
        )
    if state is ApprovalState.APPROVED:
        return f"{head} was approved at {status['decidedAt']} and has not run yet. {repeat} run it, once."
    if state is ApprovalState.EXECUTING:
        return f"{head} was approved and is running now. {repeat} get its result when it ends."
    if state in (ApprovalState.SUCCEEDED, ApprovalState.FAILED):
        ended = "succeeded" if state is ApprovalState.SUCCEEDED else "failed"
        return f"{head} ran once approved and {ended}. {repeat} get its result; it does not run again."
    if state is ApprovalState.UNKNOWN:
        return (
            f"{head} was approved, but the gateway stopped while it ran: whether it took effect is unknown, and "
            "it is not run again. Check the backend before acting on it."
        )
    return ended_message(approval.tool, approval, denial)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
