"""Activity: the calls agents make, newest first and live, and one call's whole record.

The list is the audit log's search (`find_calls`): filtered on indexed columns, cut into pages
by a keyset cursor, and bounded to `SCAN_LIMIT` calls per page when a filter is checked row by
row, so it renders quickly however long the log is. Only the first page follows new calls (the
console's script re-reads it on every `tick`): rows appearing above an older page would move
what a person is reading.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.audit.entry import OUTCOMES
from gateway.audit.query import get_call
from gateway.console import audit_search
from gateway.console.access import Permission, Visitor
from gateway.console.audit_search import DECISIONS, call_row, find_calls, read_search
from gateway.console.call_story import call_events, held_by
from gateway.console.guard import Guard
from gateway.console.rendering import render
from gateway.console.services import ConsoleServices
from gateway.errors import InvalidAuditQuery

PAGE_SIZE = 50
FIELDS = ("agent", "user", "tool", "decision", "outcome", "since", "until", "cursor")


def routes(services: ConsoleServices, guard: Guard) -> list[BaseRoute]:
    async def activity(request: Request, visitor: Visitor) -> Response:
        wanted = read_search(request.query_params, fields=FIELDS)
        problems = list(wanted.problems)
        rows: list[dict[str, Any]] = []
        next_cursor: str | None = None
        examined_until: datetime | None = None
        if not problems:
            try:
                page = await find_calls(services.database, wanted, limit=PAGE_SIZE, cursor=wanted.cursor)
            except InvalidAuditQuery as exc:
                problems.append(f"{str(exc).capitalize()}: start again from the newest calls.")
            else:
                rows = [call_row(call) for call in page.calls]
                next_cursor, examined_until = page.next_cursor, page.examined_until
        context = {
            "search": wanted,
            "rows": rows,
            "next_cursor": next_cursor,
            "examined_until": examined_until,
            "scan_limit": audit_search.SCAN_LIMIT,  # read now: a test narrows it
            "problems": problems,
            "decisions": DECISIONS,
            "outcomes": sorted(OUTCOMES),
            "live": wanted.cursor is None and not problems,
        }
        fragment = request.headers.get("x-requested-with") == "console"
        template = "activity_body.html" if fragment else "activity.html"
        status = 400 if problems else 200
        return render(request, template, context, visitor=visitor, section="activity", status_code=status)

    async def one(request: Request, visitor: Visitor) -> Response:
        call = await get_call(services.database, request.path_params["call_id"])
        if call is None:
            return render(
                request, "missing.html", {"what": "call"}, visitor=visitor, section="activity", status_code=404
            )
        context = {
            "call": call,
            "row": call_row(call),
            "data": call.call,
            "outcome": call.outcome or {},
            "events": await call_events(services.database, call.call_id),
            "held": await held_by(services.database, services.approvals, call, datetime.now(UTC)),
        }
        return render(request, "activity_call.html", context, visitor=visitor, section="activity")

    return [
        Route("/activity", guard.page(Permission.VIEWER, activity), methods=["GET"]),
        Route("/activity/{call_id}", guard.page(Permission.VIEWER, one), methods=["GET"]),
    ]
