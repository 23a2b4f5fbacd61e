"""Audit: search every kind of event, verify the hash chains on demand, download a search as JSON Lines.

The search is `gateway audit search` in a form: the same kinds, filters and time forms, and the
same keyset pages. Verification reads the whole log, so it runs only when a person asks (a POST,
one at a time per process), says how long it took, and is itself recorded (`audit_verified`); the
page shows the last recorded verification without running one. A download is recorded too
(`audit_exported`): who took a copy of the log, and of what.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gateway.audit.entry import CONSOLE, OUTCOMES, AuditEvent
from gateway.audit.query import search_events
from gateway.audit.verify import VerifyReport, verify
from gateway.console import audit_export, audit_search
from gateway.console.access import Permission, Visitor
from gateway.console.audit_export import export_lines
from gateway.console.audit_search import (
    CALL_FIELDS,
    DECISIONS,
    KINDS,
    Search,
    call_row,
    find_calls,
    read_search,
)
from gateway.console.guard import Guard
from gateway.console.rendering import render
from gateway.console.services import ConsoleServices
from gateway.errors import InvalidAuditQuery
from gateway.storage.database import Database

FIELDS = ("kind", *CALL_FIELDS, "since", "until", "limit", "cursor")
VERIFIED = "audit_verified"
EXPORTED = "audit_exported"
#: Console events looked through for the last verification (newest first, through the kind index).
_RECENT_CONSOLE_EVENTS = 200


@dataclass(frozen=True, slots=True)
class Verification:
    """A verification as the page shows it: just run, or the last one recorded."""

    ok: bool
    events: int
    chains: int
    seconds: float
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    at: datetime
    by: str
    just_now: bool

    @classmethod
    def of(cls, report: VerifyReport, seconds: float, by: str) -> Verification:
        problems = tuple(str(problem) for problem in report.problems)
        chains = len(report.replicas)
        return cls(report.ok, report.events, chains, seconds, problems, report.notes, datetime.now(UTC), by, True)

    @classmethod
    def recorded(cls, event: AuditEvent) -> Verification:
        details = event.data.get("details") or {}
        problem = details.get("first_problem")
        return cls(
            ok=bool(details.get("ok")),
            events=int(details.get("events") or 0),
            chains=int(details.get("chains") or 0),
            seconds=float(details.get("seconds") or 0.0),
            problems=(str(problem),) if problem else (),
            notes=(),
            at=event.time,
            by=str(event.data.get("user") or "-"),
            just_now=False,
        )


def routes(services: ConsoleServices, guard: Guard) -> list[BaseRoute]:
    # One verification at a time in this process: it reads the whole log, and a second click
    # while it runs would only double the work.
    verifying = anyio.Lock()

    async def page(
        request: Request, visitor: Visitor, *, verification: Verification | None = None, busy: bool = False
    ) -> Response:
        wanted = read_search(request.query_params, fields=FIELDS)
        problems = list(wanted.problems)
        results: dict[str, Any] = {"calls": [], "events": [], "next_cursor": None, "examined_until": None}
        if not problems:
            try:
                results = await _results(services.database, wanted)
            except InvalidAuditQuery as exc:
                problems.append(f"{str(exc).capitalize()}: start again from the newest events.")
        if verification is None and not busy:
            verification = await _last_verification(services.database)
        context = {
            "search": wanted,
            "problems": problems,
            **results,
            "kinds": KINDS,
            "decisions": DECISIONS,
            "outcomes": sorted(OUTCOMES),
            "scan_limit": audit_search.SCAN_LIMIT,  # read now: a test narrows it
            "max_results": audit_export.MAX_RESULTS,
            "verification": verification,
            "busy": busy,
        }
        status = 400 if problems else 200
        return render(request, "audit.html", context, visitor=visitor, section="audit", status_code=status)

    async def search_page(request: Request, visitor: Visitor) -> Response:
        return await page(request, visitor)

    async def verify_now(request: Request, visitor: Visitor) -> Response:
        if verifying.locked():
            return await page(request, visitor, busy=True)
        async with verifying:
            started = time.perf_counter()
            report = await verify(services.database)
            seconds = time.perf_counter() - started
        done = Verification.of(report, seconds, visitor.user.name)
        await services.audit.record_console_event(
            VERIFIED,
            user=visitor.user.name,
            via=visitor.session.via,
            client_address=request.client.host if request.client else None,
            details={
                "ok": report.ok,
                "events": report.events,
                "chains": len(report.replicas),
                "seconds": round(seconds, 3),
                "first_problem": str(report.problems[0]) if report.problems else None,
            },
        )
        return await page(request, visitor, verification=done)

    async def export(request: Request, visitor: Visitor) -> Response:
        wanted = read_search(request.query_params, fields=FIELDS)
        if wanted.problems:
            return await page(request, visitor)
        await services.audit.record_console_event(
            EXPORTED,
            user=visitor.user.name,
            via=visitor.session.via,
            client_address=request.client.host if request.client else None,
            target=wanted.kind,
            details={"search": wanted.query(cursor=None), "max_results": audit_export.MAX_RESULTS},
        )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return StreamingResponse(
            export_lines(services.database, wanted),
            media_type="application/x-ndjson",
            headers={"content-disposition": f'attachment; filename="audit-{wanted.kind}-{stamp}.jsonl"'},
        )

    return [
        Route("/audit", guard.page(Permission.VIEWER, search_page), methods=["GET"]),
        Route("/audit/verify", guard.page(Permission.VIEWER, verify_now), methods=["POST"]),
        Route("/audit/export", guard.page(Permission.VIEWER, export), methods=["GET"]),
    ]


async def _results(db: Database, wanted: Search) -> dict[str, Any]:
    """One page of what `wanted` selects: calls as list rows, or events of a standalone kind."""
    if wanted.calls:
        found = await find_calls(db, wanted, limit=wanted.limit, cursor=wanted.cursor)
        return {
            "calls": [call_row(call) for call in found.calls],
            "events": [],
            "next_cursor": found.next_cursor,
            "examined_until": found.examined_until,
        }
    filters = wanted.filters
    page = await search_events(
        db, wanted.event_kind, since=filters.since, until=filters.until, limit=wanted.limit, cursor=wanted.cursor
    )
    return {"calls": [], "events": list(page.events), "next_cursor": page.next_cursor, "examined_until": None}


async def _last_verification(db: Database) -> Verification | None:
    """The newest verification recorded among the recent console events, if any."""
    page = await search_events(db, CONSOLE, limit=_RECENT_CONSOLE_EVENTS)
    for event in page.events:
        if event.data.get("action") == VERIFIED:
            return Verification.recorded(event)
    return None
