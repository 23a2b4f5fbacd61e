"""One call's story for its page: every event written about it, and the approval that held it.

A held call's record names its approval in its reason whenever the hold reached one: the call
that waited and was not yet decided, the run once approved, the outcome collected by a repeat,
and the refusal by people or by expiry all say "approval <id>" (see `holding.py`). A held call
refused without that (no approvals configured, or denied by the access policies once approved)
is linked to nothing, so for it the page lists the approvals of the same agent and tool made in
the day before, marked as found by proximity rather than recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, select

from gateway.approvals import ApprovalStore
from gateway.audit.entry import AuditCall, AuditEvent, event_from_content
from gateway.errors import ApprovalFailure
from gateway.front.approvals_api import approval_json
from gateway.storage.database import Database
from gateway.storage.tables import ApprovalRow, AuditEventRow

_EVENTS = cast(Table, AuditEventRow.__table__)
_APPROVALS = cast(Table, ApprovalRow.__table__)
_APPROVAL_ID = re.compile(r"\bapproval ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b", re.IGNORECASE)
#: How far before a held call its approval may have been made (an approved call runs when repeated).
NEARBY = timedelta(hours=24)
NEARBY_LIMIT = 5
#: A call has a call event and an outcome; more would be a bug, and is shown rather than hidden.
_MOST_EVENTS = 20


@dataclass(frozen=True, slots=True)
class HeldBy:
    """The approvals a call's page shows: named by its record (`linked`), or found near it in time."""

    approvals: tuple[dict[str, Any], ...]
    linked: bool
    #: Ids the record names that the approval store no longer holds (pruned, or another database).
    missing: tuple[str, ...] = ()


async def call_events(db: Database, call_id: str) -> tuple[AuditEvent, ...]:
    """The events recorded with `call_id` (its call and its outcome), in the order they were written."""
    query = (
        select(_EVENTS.c.content, _EVENTS.c.prev_hash, _EVENTS.c.hash)
        .where(_EVENTS.c.call_id == call_id)
        .order_by(_EVENTS.c.time, _EVENTS.c.replica_id, _EVENTS.c.seq)
        .limit(_MOST_EVENTS)
    )
    async with db.session() as session:
        rows = (await session.execute(query)).all()
    return tuple(event_from_content(row.content, prev_hash=row.prev_hash, hash=row.hash) for row in rows)


def named_approvals(reason: str | None) -> tuple[str, ...]:
    """The approval ids a call's recorded reason names, once each, in order."""
    return tuple(dict.fromkeys(match.lower() for match in _APPROVAL_ID.findall(reason or "")))


async def held_by(db: Database, store: ApprovalStore | None, call: AuditCall, now: datetime) -> HeldBy | None:
    """The approvals behind `call`; None when it was not held and names none."""
    named = named_approvals(call.call.get("reason"))
    if not named and call.decision != "hold":
        return None
    if store is None:
        return HeldBy((), linked=bool(named), missing=named)
    if named:
        found, missing = [], []
        for approval_id in named:
            try:
                approval = await store.get(approval_id)
            except ApprovalFailure:
                missing.append(approval_id)
                continue
            found.append(approval_json(approval, await store.votes(approval.id), now))
        return HeldBy(tuple(found), linked=True, missing=tuple(missing))
    nearby = []
    for approval_id in await _made_before(db, call):
        try:
            approval = await store.get(approval_id)
        except ApprovalFailure:
            continue  # removed since the look-up
        nearby.append(approval_json(approval, await store.votes(approval.id), now))
    return HeldBy(tuple(nearby), linked=False)


async def _made_before(db: Database, call: AuditCall) -> list[str]:
    """Ids of `call`'s agent's approvals of its tool made in the `NEARBY` before it, newest first.

    Read through the index on (created_at, id), bounded by the time range and `NEARBY_LIMIT`.
    """
    if call.agent is None or call.tool is None:
        return []
    query = (
        select(_APPROVALS.c.id)
        .where(
            _APPROVALS.c.created_at <= call.time,
            _APPROVALS.c.created_at >= call.time - NEARBY,
            _APPROVALS.c.agent == call.agent,
            _APPROVALS.c.tool == call.tool,
        )
        .order_by(_APPROVALS.c.created_at.desc(), _APPROVALS.c.id.desc())
        .limit(NEARBY_LIMIT)
    )
    async with db.session() as session:
        return list((await session.execute(query)).scalars())
