"""Workflows: what several agents did together, read from the audit log, plus notes and shared results.

A workflow is named by its calls (`Call.workflow`: the `_meta` key, the `X-Workflow-Id` header,
or the client's MCP session). Its steps are not written twice: the audit log already holds,
durably and in group commits, every call's tool, agent, user, decision, outcome, time and
workflow id (`audit_events`, indexed by `workflow_id`), so a timeline is a query over it. Only
what the audit log does not hold has tables of its own (migration 0013): the hand-off notes
agents leave (`workflow_notes`) and the short, redacted result summaries a connector file
chose to share (`workflow_results`, per tool `share_result = true`).

`WorkflowStore` is the one reader and writer, for the gateway's own tools
(`gateway__workflow_status`, `gateway__workflow_note`), the CLI (`gateway workflows`), the
console, and the pipeline's `context.workflow` (`state`). Its public names are stable:

- `recent(agent=, since=, limit=)` → `list[WorkflowSummary]`, most recent activity first;
- `timeline(workflow, limit=)` → `WorkflowTimeline`: the latest `limit` steps (oldest first),
  the latest notes, the approvals still open, and whether older steps were left out;
- `state(workflow)` → `WorkflowState`: the exposed tools that succeeded and the agents that
  made calls, as Cedar policies see them (`context.workflow.completed`, `.agents`);
- `add_note(workflow, agent=, user=, text=)` → `WorkflowNote`;
- `share_result(workflow, call_id=, tool=, agent=, summary=)`: the summary of one call's result.

Every time is timezone-aware UTC. Nothing here filters by who asks: Cedar decides who may call
the tools that read it, and the CLI and console have their own access rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import Table, and_, func, insert, literal, select, union_all
from sqlalchemy.exc import IntegrityError

from gateway.approvals.ids import uuid7
from gateway.approvals.model import OPEN_STATES
from gateway.calls import WorkflowState
from gateway.storage.database import Database
from gateway.storage.tables import ApprovalRow, AuditEventRow, WorkflowNoteRow, WorkflowResultRow

#: A timeline shows at most this many steps and notes unless asked for fewer.
DEFAULT_TIMELINE_STEPS = 50
MAX_TIMELINE_STEPS = 1000
MAX_LIST_LIMIT = 500
#: The longest note an agent may leave, and the longest shared result summary (characters).
MAX_NOTE_CHARS = 4000
MAX_SUMMARY_CHARS = 500

_EVENTS = cast(Table, AuditEventRow.__table__)
_NOTES = cast(Table, WorkflowNoteRow.__table__)
_RESULTS = cast(Table, WorkflowResultRow.__table__)
_APPROVALS = cast(Table, ApprovalRow.__table__)
_OPEN = tuple(state.value for state in OPEN_STATES)


@dataclass(frozen=True, slots=True)
class WorkflowStep:
    """One request made in a workflow: who asked for what, what policy decided, how it ended.

    `outcome` is None while the call runs (or when its process stopped before recording one).
    `summary` is the shared, redacted result summary, only for tools whose connector file shares it.
    """

    call_id: str
    time: datetime
    tool: str | None
    agent: str | None
    user: str | None
    decision: str | None
    outcome: str | None
    reason: str | None = None
    summary: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "callId": self.call_id,
            "time": iso(self.time),
            "tool": self.tool,
            "agent": self.agent,
            "user": self.user,
            "decision": self.decision,
            "outcome": self.outcome,
            "reason": self.reason,
            "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class WorkflowNote:
    """A hand-off note: what one agent wants the others in the workflow to know."""

    id: str
    workflow: str
    agent: str
    user: str | None
    text: str
    time: datetime

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "agent": self.agent, "user": self.user, "text": self.text, "time": iso(self.time)}


@dataclass(frozen=True, slots=True)
class PendingApproval:
    """A call of the workflow held for people, still open (pending, approved but not run, or running)."""

    id: str
    tool: str
    agent: str
    state: str
    approvers: tuple[str, ...]
    created_at: datetime
    expires_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tool": self.tool,
            "agent": self.agent,
            "state": self.state,
            "approvers": list(self.approvers),
            "createdAt": iso(self.created_at),
            "expiresAt": iso(self.expires_at),
        }


@dataclass(frozen=True, slots=True)
class WorkflowSummary:
    """One line of `gateway workflows list`: a workflow and how busy it was."""

    id: str
    agents: tuple[str, ...]
    steps: int
    first_activity: datetime
    last_activity: datetime
    pending_approvals: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agents": list(self.agents),
            "steps": self.steps,
            "firstActivity": iso(self.first_activity),
            "lastActivity": iso(self.last_activity),
            "pendingApprovals": self.pending_approvals,
        }


@dataclass(frozen=True, slots=True)
class WorkflowTimeline:
    """A workflow's latest steps (oldest first), notes (oldest first) and open approvals.

    `total_steps` counts every step; `truncated` says older steps were left out (`steps` holds
    the latest `limit`). `notes_truncated` says the same of notes.
    """

    id: str
    steps: tuple[WorkflowStep, ...]
    notes: tuple[WorkflowNote, ...]
    pending: tuple[PendingApproval, ...]
    total_steps: int
    truncated: bool
    notes_truncated: bool = False

    @property
    def agents(self) -> tuple[str, ...]:
        """The agents seen in the shown steps and notes, in order of first appearance."""
        seen: dict[str, None] = {}
        for step in self.steps:
            if step.agent:
                seen.setdefault(step.agent)
        for note in self.notes:
            seen.setdefault(note.agent)
        return tuple(seen)

    @property
    def empty(self) -> bool:
        return not self.steps and not self.notes and not self.pending

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow": self.id,
            "agents": list(self.agents),
            "steps": [step.to_json() for step in self.steps],
            "totalSteps": self.total_steps,
            "truncated": self.truncated,
            "notes": [note.to_json() for note in self.notes],
            "notesTruncated": self.notes_truncated,
            "pendingApprovals": [approval.to_json() for approval in self.pending],
        }


def iso(moment: datetime) -> str:
    """A time as the tools, CLI and JSON print it: ISO 8601 UTC to the second, with a `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class WorkflowStore:
    """Reads workflows from the audit log and keeps their notes and shared results; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- reading -------------------------------------------------------------------------------

    async def state(self, workflow: str | None) -> WorkflowState:
        """The exposed names that succeeded in `workflow` and the agents that made calls in it.

        One query, by the audit log's `workflow_id` index. A step counts once its outcome is
        committed: the pipeline waits for that commit for the tools a policy names in
        `context.workflow.completed`, so those count as soon as their result reached the agent.
        """
        if not workflow:
            return WorkflowState()
        calls = _EVENTS.alias("calls")
        outcomes = _EVENTS.alias("outcomes")
        agents = select(literal("a").label("what"), calls.c.agent.label("name")).where(
            calls.c.kind == "call", calls.c.workflow_id == workflow
        )
        completed = (
            select(literal("c").label("what"), calls.c.tool.label("name"))
            .select_from(calls.join(outcomes, outcomes.c.call_id == calls.c.call_id))
            .where(
                calls.c.kind == "call",
                calls.c.workflow_id == workflow,
                outcomes.c.kind == "outcome",
                outcomes.c.outcome == "ok",
            )
        )
        query = union_all(agents, completed).subquery()
        async with self._db.session() as session:
            rows = (await session.execute(select(query.c.what, query.c.name).distinct())).all()
        return WorkflowState(
            completed=frozenset(name for what, name in rows if what == "c" and name),
            agents=frozenset(name for what, name in rows if what == "a" and name),
        )

    async def timeline(self, workflow: str, *, limit: int = DEFAULT_TIMELINE_STEPS) -> WorkflowTimeline:
        """The latest `limit` steps and notes of `workflow` (oldest first) and its open approvals."""
        limit = max(1, min(limit, MAX_TIMELINE_STEPS))
        async with self._db.session() as session:
            call_rows = (
                await session.execute(
                    select(
                        _EVENTS.c.call_id,
                        _EVENTS.c.time,
                        _EVENTS.c.tool,
                        _EVENTS.c.agent,
                        _EVENTS.c.user_id,
                        _EVENTS.c.decision,
                        _EVENTS.c.content,
                    )
                    .where(_EVENTS.c.kind == "call", _EVENTS.c.workflow_id == workflow)
                    .order_by(_EVENTS.c.time.desc(), _EVENTS.c.seq.desc())
                    .limit(limit + 1)
                )
            ).all()
            truncated = len(call_rows) > limit
            call_rows = call_rows[:limit]
            total = len(call_rows)
            if truncated:
                total = (
                    await session.execute(
                        select(func.count()).where(_EVENTS.c.kind == "call", _EVENTS.c.workflow_id == workflow)
                    )
                ).scalar_one()
            call_ids = [row.call_id for row in call_rows if row.call_id]
            outcomes: dict[str, str | None] = {}
            summaries: dict[str, str] = {}
            if call_ids:
                for row in await session.execute(
                    select(_EVENTS.c.call_id, _EVENTS.c.outcome).where(
                        _EVENTS.c.kind == "outcome", _EVENTS.c.call_id.in_(call_ids)
                    )
                ):
                    outcomes[row.call_id] = row.outcome
                for row in await session.execute(
                    select(_RESULTS.c.call_id, _RESULTS.c.summary).where(_RESULTS.c.call_id.in_(call_ids))
                ):
                    summaries[row.call_id] = row.summary
            note_rows = (
                await session.execute(
                    select(_NOTES)
                    .where(_NOTES.c.workflow_id == workflow)
                    .order_by(_NOTES.c.created_at.desc(), _NOTES.c.id.desc())
                    .limit(limit + 1)
                )
            ).all()
            approval_rows = (
                await session.execute(
                    select(
                        _APPROVALS.c.id,
                        _APPROVALS.c.tool,
                        _APPROVALS.c.agent,
                        _APPROVALS.c.state,
                        _APPROVALS.c.approvers,
                        _APPROVALS.c.created_at,
                        _APPROVALS.c.expires_at,
                    )
                    .where(_APPROVALS.c.workflow_id == workflow, _APPROVALS.c.state.in_(_OPEN))
                    .order_by(_APPROVALS.c.created_at)
                    .limit(MAX_LIST_LIMIT)
                )
            ).all()
        steps = tuple(
            WorkflowStep(
                call_id=row.call_id,
                time=row.time,
                tool=row.tool,
                agent=row.agent,
                user=row.user_id,
                decision=row.decision,
                outcome=outcomes.get(row.call_id),
                reason=_reason(row.content),
                summary=summaries.get(row.call_id),
            )
            for row in reversed(call_rows)
        )
        notes = tuple(_note(row) for row in reversed(note_rows[:limit]))
        pending = tuple(
            PendingApproval(
                id=row.id,
                tool=row.tool,
                agent=row.agent,
                state=row.state,
                approvers=tuple(row.approvers or ()),
                created_at=row.created_at,
                expires_at=row.expires_at,
            )
            for row in approval_rows
        )
        return WorkflowTimeline(
            id=workflow,
            steps=steps,
            notes=notes,
            pending=pending,
            total_steps=total,
            truncated=truncated,
            notes_truncated=len(note_rows) > limit,
        )

    async def recent(
        self, *, agent: str | None = None, since: datetime | None = None, limit: int = 50
    ) -> list[WorkflowSummary]:
        """Workflows with calls, most recent activity first; `agent`: those it made calls in; `since`: active since."""
        if since is not None and since.tzinfo is None:
            raise ValueError("since must carry a time zone")
        limit = max(1, min(limit, MAX_LIST_LIMIT))
        conditions = [_EVENTS.c.kind == "call", _EVENTS.c.workflow_id.is_not(None)]
        if since is not None:
            conditions.append(_EVENTS.c.time >= since)
        if agent is not None:
            by_agent = (
                select(_EVENTS.c.workflow_id)
                .where(_EVENTS.c.kind == "call", _EVENTS.c.agent == agent, _EVENTS.c.workflow_id.is_not(None))
                .distinct()
            )
            conditions.append(_EVENTS.c.workflow_id.in_(by_agent))
        last = func.max(_EVENTS.c.time).label("last")
        query = (
            select(_EVENTS.c.workflow_id, func.count().label("steps"), func.min(_EVENTS.c.time).label("first"), last)
            .where(and_(*conditions))
            .group_by(_EVENTS.c.workflow_id)
            .order_by(last.desc(), _EVENTS.c.workflow_id)
            .limit(limit)
        )
        async with self._db.session() as session:
            rows = (await session.execute(query)).all()
            ids = [row.workflow_id for row in rows]
            agents: dict[str, set[str]] = {}
            pending: dict[str, int] = {}
            if ids:
                for row in await session.execute(
                    select(_EVENTS.c.workflow_id, _EVENTS.c.agent)
                    .where(_EVENTS.c.kind == "call", _EVENTS.c.workflow_id.in_(ids))
                    .distinct()
                ):
                    if row.agent:
                        agents.setdefault(row.workflow_id, set()).add(row.agent)
                for row in await session.execute(
                    select(_APPROVALS.c.workflow_id, func.count().label("open"))
                    .where(_APPROVALS.c.workflow_id.in_(ids), _APPROVALS.c.state.in_(_OPEN))
                    .group_by(_APPROVALS.c.workflow_id)
                ):
                    pending[row.workflow_id] = row.open
        return [
            WorkflowSummary(
                id=row.workflow_id,
                agents=tuple(sorted(agents.get(row.workflow_id, ()))),
                steps=row.steps,
                first_activity=_aware(row.first),
                last_activity=_aware(row.last),
                pending_approvals=pending.get(row.workflow_id, 0),
            )
            for row in rows
        ]

    # -- writing -------------------------------------------------------------------------------

    async def add_note(self, workflow: str, *, agent: str, user: str | None, text: str) -> WorkflowNote:
        """Keep a hand-off note; the caller bounds and redacts `text` (see `MAX_NOTE_CHARS`)."""
        moment = datetime.now(UTC)
        note = WorkflowNote(str(uuid7(moment)), workflow, agent, user, text, moment)
        async with self._db.session() as session, session.begin():
            await session.execute(
                insert(_NOTES).values(
                    id=note.id, workflow_id=workflow, agent=agent, user_id=user, text=text, created_at=moment
                )
            )
        return note

    async def share_result(self, workflow: str, *, call_id: str, tool: str, agent: str, summary: str) -> None:
        """Keep the summary of one call's result; a second summary of the same call is ignored."""
        try:
            async with self._db.session() as session, session.begin():
                await session.execute(
                    insert(_RESULTS).values(
                        call_id=call_id,
                        workflow_id=workflow,
                        tool=tool,
                        agent=agent,
                        summary=summary[:MAX_SUMMARY_CHARS],
                        created_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            pass


def _reason(content: str | None) -> str | None:
    """The decision's reason as the audit event recorded it (already redacted)."""
    if not content:
        return None
    try:
        document = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    data = document.get("data") if isinstance(document, dict) else None
    reason = data.get("reason") if isinstance(data, dict) else None
    return reason if isinstance(reason, str) else None


def _note(row: Any) -> WorkflowNote:
    return WorkflowNote(row.id, row.workflow_id, row.agent, row.user_id, row.text, row.created_at)


def _aware(moment: datetime) -> datetime:
    """`min`/`max` over a column skip its type on SQLite, which then hands back naive (UTC) text or datetimes."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def agents_of(steps: Iterable[WorkflowStep]) -> Sequence[str]:
    """The distinct agents of `steps`, in order of first appearance."""
    return tuple(dict.fromkeys(step.agent for step in steps if step.agent))
