"""The Audit page's download: a search's events as JSON Lines, streamed a page at a time.

Each line is an event exactly as `gateway audit export --format jsonl` writes it (position,
kind, time, call id, `prev_hash`, `hash` and the payload), so a downloaded call can be checked
against the chain. Unlike that export, lines come in the search's order (newest first), a call's
outcome right after its call, and only the events the search selects. A download is bounded by
`MAX_RESULTS` results (calls or events) so one click cannot stream the whole log; the whole log
is `gateway audit export`'s job, written to a file whole or not at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from typing import cast

import orjson
from sqlalchemy import Table, select

from gateway.audit.entry import AuditEvent, event_from_content
from gateway.audit.query import search_events
from gateway.console.audit_search import Search, find_calls
from gateway.storage.database import Database
from gateway.storage.tables import AuditEventRow

MAX_RESULTS = 50_000
#: Results read per query: large enough to stream quickly, small enough to hold no lock for long.
PAGE = 500
_EVENTS = cast(Table, AuditEventRow.__table__)


async def export_lines(db: Database, wanted: Search, *, max_results: int | None = None) -> AsyncIterator[bytes]:
    """The events `wanted` selects, one JSON object per line, newest first, at most `max_results` results."""
    max_results = MAX_RESULTS if max_results is None else max_results
    sent = 0
    cursor: str | None = None
    while sent < max_results:
        size = min(PAGE, max_results - sent)
        if wanted.calls:
            page = await find_calls(db, wanted, limit=size, cursor=cursor)
            events = await _events_of(db, [call.call_id for call in page.calls])
            for call in page.calls:
                for event in events.get(call.call_id, ()):
                    yield _line(event)
            sent += len(page.calls)
            cursor = page.next_cursor
        else:
            found = await search_events(
                db, wanted.event_kind, since=wanted.filters.since, until=wanted.filters.until, limit=size, cursor=cursor
            )
            for event in found.events:
                yield _line(event)
            sent += len(found.events)
            cursor = found.next_cursor
        if cursor is None:
            return


async def _events_of(db: Database, call_ids: list[str]) -> dict[str, list[AuditEvent]]:
    """The events of these calls (each call and its outcome) by call id, in the order they were written."""
    if not call_ids:
        return {}
    query = (
        select(_EVENTS.c.content, _EVENTS.c.prev_hash, _EVENTS.c.hash)
        .where(_EVENTS.c.call_id.in_(call_ids))
        .order_by(_EVENTS.c.time, _EVENTS.c.replica_id, _EVENTS.c.seq)
    )
    async with db.session() as session:
        rows = (await session.execute(query)).all()
    events: dict[str, list[AuditEvent]] = defaultdict(list)
    for row in rows:
        event = event_from_content(row.content, prev_hash=row.prev_hash, hash=row.hash)
        if event.call_id is not None:
            events[event.call_id].append(event)
    return events


def _line(event: AuditEvent) -> bytes:
    return orjson.dumps(event.to_json()) + b"\n"
