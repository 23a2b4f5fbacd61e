"""Workflows: what several agents did together, most recent first, and one workflow's timeline.

Both pages read the workflow store (`gateway.coordination.workflows`), which reads the audit
log's `workflow_id` index, so the list costs one grouped query however long the log is. A
workflow's page merges its steps and hand-off notes into one timeline, oldest first, each step
linked to its call in Activity; both pages follow new calls live (the console's script re-reads
their body on every `tick`), and read whole without JavaScript.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.console.access import Permission, Visitor
from gateway.console.guard import Guard
from gateway.console.rendering import render
from gateway.console.services import ConsoleServices
from gateway.coordination.workflows import WorkflowNote, WorkflowStep, WorkflowTimeline

#: The list shows this many workflows, most recent activity first.
LIST_LIMIT = 100
#: A workflow's page shows its latest this many steps (and notes).
TIMELINE_LIMIT = 200
#: The longest agent name the list's filter takes: a longer one matches nothing anyway.
MAX_AGENT_FILTER = 256


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a workflow's timeline: a step (a call) or a note, with what the page shows of it."""

    time: datetime
    agent: str | None
    step: WorkflowStep | None = None
    note: WorkflowNote | None = None
    #: The step's shared result summary, indented when it is JSON.
    summary: str | None = None


def timeline_entries(timeline: WorkflowTimeline) -> list[Entry]:
    """Steps and notes in one list, oldest first; at the same moment a step comes before the note about it."""
    entries = [Entry(step.time, step.agent, step=step, summary=readable(step.summary)) for step in timeline.steps]
    entries += [Entry(note.time, note.agent, note=note) for note in timeline.notes]
    return sorted(entries, key=lambda entry: (entry.time, entry.note is not None))


def readable(summary: str | None) -> str | None:
    """A shared result summary as people read it: JSON indented, anything else (a cut summary) as it is."""
    if summary is None:
        return None
    try:
        return json.dumps(json.loads(summary), indent=2, ensure_ascii=False)
    except ValueError:
        return summary


def agent_rows(timeline: WorkflowTimeline) -> list[dict[str, Any]]:
    """Each agent of the workflow with how many of the shown steps and notes are its, and when it last acted."""
    rows: dict[str, dict[str, Any]] = {}
    for agent in timeline.agents:
        rows[agent] = {"name": agent, "steps": 0, "notes": 0, "first": None, "last": None}
    for step in timeline.steps:
        if step.agent:
            _count(rows[step.agent], "steps", step.time)
    for note in timeline.notes:
        _count(rows[note.agent], "notes", note.time)
    return list(rows.values())


def _count(row: dict[str, Any], what: str, moment: datetime) -> None:
    row[what] += 1
    row["first"] = moment if row["first"] is None else min(row["first"], moment)
    row["last"] = moment if row["last"] is None else max(row["last"], moment)


def routes(services: ConsoleServices, guard: Guard) -> list[BaseRoute]:
    async def listing(request: Request, visitor: Visitor) -> Response:
        agent = request.query_params.get("agent", "").strip()
        problems = []
        if len(agent) > MAX_AGENT_FILTER:
            problems.append(f"An agent name is at most {MAX_AGENT_FILTER} characters: shorten the filter.")
        workflows = [] if problems else await services.workflows.recent(agent=agent or None, limit=LIST_LIMIT)
        context = {"agent": agent, "workflows": workflows, "limit": LIST_LIMIT, "problems": problems}
        fragment = request.headers.get("x-requested-with") == "console"
        template = "workflows_body.html" if fragment else "workflows.html"
        status = 400 if problems else 200
        return render(request, template, context, visitor=visitor, section="workflows", status_code=status)

    async def one(request: Request, visitor: Visitor) -> Response:
        workflow = request.path_params["workflow_id"]
        timeline = await services.workflows.timeline(workflow, limit=TIMELINE_LIMIT)
        if timeline.empty:
            return render(
                request, "missing.html", {"what": "workflow"}, visitor=visitor, section="workflows", status_code=404
            )
        context = {
            "workflow": timeline,
            "entries": timeline_entries(timeline),
            "agents": agent_rows(timeline),
        }
        fragment = request.headers.get("x-requested-with") == "console"
        template = "workflow_body.html" if fragment else "workflow.html"
        return render(request, template, context, visitor=visitor, section="workflows")

    return [
        Route("/workflows", guard.page(Permission.VIEWER, listing), methods=["GET"]),
        Route("/workflows/{workflow_id:path}", guard.page(Permission.VIEWER, one), methods=["GET"]),
    ]
