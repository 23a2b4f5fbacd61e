"""The gateway's workflow tools: `workflow_status` (what happened so far) and `workflow_note` (a hand-off).

Served by the gateway's own connector (`gateway_tools.py`), so Cedar decides who may call them
and every call is audited like any other. Both default to the caller's workflow (`Caller.workflow`:
the call's `_meta`, `X-Workflow-Id` header or MCP session). The status is bounded (the latest
`limit` steps and notes) and says when older ones were left out; its text is written for a model
to act on, its structured content follows the tool's `outputSchema`.
"""

from __future__ import annotations

from typing import Any

from gateway.audit.redaction import Redactor
from gateway.calls import workflow_id_problem
from gateway.catalog.builtin import WORKFLOW_STATUS
from gateway.connectors.base import Caller, JsonObject
from gateway.coordination.workflows import (
    DEFAULT_TIMELINE_STEPS,
    MAX_NOTE_CHARS,
    WorkflowStore,
    WorkflowTimeline,
    iso,
)
from gateway.settings.connectors import GATEWAY_TOOLS_CONNECTOR

#: The most steps one status shows (the tool's `limit` maximum).
MAX_STATUS_STEPS = 200


def tool_error(text: str) -> JsonObject:
    """A tool result the model reads as a failure to act on."""
    return {"content": [{"type": "text", "text": text}], "isError": True}


def _workflow(arguments: JsonObject, caller: Caller) -> tuple[str | None, str | None]:
    """The workflow asked about (the argument, else the caller's) or why there is none."""
    if "workflow" in arguments and arguments["workflow"] is not None:
        value = arguments["workflow"]
        problem = workflow_id_problem(value, "the 'workflow' argument")
        return (None, problem) if problem is not None else (value, None)
    if caller.workflow is None:
        return None, (
            "This call belongs to no workflow: pass the 'workflow' argument, or name one with the "
            "io.autonomy-gateway/workflow _meta key or the X-Workflow-Id header."
        )
    return caller.workflow, None


async def workflow_status(store: WorkflowStore, arguments: JsonObject, caller: Caller) -> JsonObject:
    workflow, problem = _workflow(arguments, caller)
    if workflow is None:
        return tool_error(problem or "no workflow")
    limit = arguments.get("limit", DEFAULT_TIMELINE_STEPS)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_STATUS_STEPS:
        return tool_error(f"'limit' must be an integer from 1 to {MAX_STATUS_STEPS}; leave it out for the latest 50.")
    timeline = await store.timeline(workflow, limit=limit)
    return {"content": [{"type": "text", "text": describe(timeline)}], "structuredContent": timeline.to_json()}


async def workflow_note(store: WorkflowStore, redactor: Redactor, arguments: JsonObject, caller: Caller) -> JsonObject:
    workflow, problem = _workflow(arguments, caller)
    if workflow is None:
        return tool_error(problem or "no workflow")
    text = arguments.get("text")
    if not isinstance(text, str) or not text.strip():
        return tool_error("'text' must be the note: non-empty text saying what the other agents should know.")
    if len(text) > MAX_NOTE_CHARS:
        return tool_error(f"The note is {len(text)} characters long; at most {MAX_NOTE_CHARS} are kept. Shorten it.")
    if "\x00" in text:
        return tool_error(
            "The note contains a NUL character (\\u0000), which cannot be stored; remove it and call again."
        )
    note = await store.add_note(
        workflow,
        agent=caller.agent,
        user=caller.user,
        text=redactor.redact_text(text.strip(), max_chars=MAX_NOTE_CHARS),
    )
    said = f"Note saved in workflow '{workflow}'. The other agents in it read it with workflow_status."
    structured: dict[str, Any] = {"id": note.id, "workflow": workflow, "agent": note.agent, "time": iso(note.time)}
    return {"content": [{"type": "text", "text": said}], "structuredContent": structured}


def describe(timeline: WorkflowTimeline) -> str:
    """The status as text a model acts on: who did what and how it ended, the notes, what waits for people."""
    if timeline.empty:
        return (
            f"Workflow '{timeline.id}' has no steps, notes or pending approvals yet: nothing has been done in it. "
            "Check the workflow id if you expected another agent's work here."
        )
    lines = [f"Workflow '{timeline.id}': {timeline.total_steps} step(s) by {', '.join(timeline.agents) or 'no agent'}."]
    if timeline.truncated:
        lines.append(f"Showing the latest {len(timeline.steps)} steps; older ones were left out.")
    if timeline.steps:
        lines.append("Steps (oldest first):")
    for step in timeline.steps:
        ended = step.outcome or _no_outcome_yet(step.tool)
        line = f"- {iso(step.time)} {step.agent} called {step.tool}: {_verdict(step.decision, ended)}"
        if step.outcome not in ("ok", "held") and step.reason and step.decision not in ("allow", None):
            line += f" ({step.reason})"
        if step.summary:
            line += f". Result: {step.summary}"
        lines.append(line)
    if timeline.notes:
        lines.append("Notes:" if not timeline.notes_truncated else "Notes (the latest; older ones left out):")
        lines.extend(f"- {iso(note.time)} {note.agent}: {note.text}" for note in timeline.notes)
    if timeline.pending:
        lines.append("Pending human approval:")
        lines.extend(
            f"- {approval.tool} by {approval.agent}, approval {approval.id}: {approval.state}, "
            f"decided by {', '.join(approval.approvers)}, expires {iso(approval.expires_at)}"
            for approval in timeline.pending
        )
    else:
        lines.append("Nothing in this workflow is pending human approval.")
    return "\n".join(lines)


def _no_outcome_yet(tool: str | None) -> str:
    """A step still open. A status read in its own workflow lists itself: say so, not "its gateway stopped"."""
    if tool is not None and tool.startswith(GATEWAY_TOOLS_CONNECTOR) and tool.endswith(WORKFLOW_STATUS):
        return "running (a status read, such as this one)"
    return "no outcome yet (running, or its gateway stopped)"


def _verdict(decision: str | None, outcome: str) -> str:
    if decision == "allow":
        return "succeeded" if outcome == "ok" else outcome
    if decision == "hold":
        # The hold's reason speaks to the agent that made the call ("repeat the identical call"): the
        # pending section below says who must decide, so a held step only says it waits.
        return "held, waiting for people" if outcome == "held" else f"held for approval, {outcome}"
    return outcome if decision in (None, outcome) else f"{decision}, {outcome}"
