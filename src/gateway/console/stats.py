"""The overview's figures: the last hour of calls, read from the audit log with the index on (kind, time).

Bounded however busy the gateway is: at most `MAX_CALLS` of the newest calls of the hour are read
(newest first through the index), so the page stays fast with millions of events stored; the
figures say when they cover only part of the hour.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Table, and_, select

from gateway.audit.entry import CALL, OUTCOME
from gateway.storage.database import Database
from gateway.storage.tables import AuditEventRow

MAX_CALLS = 5000
MINUTES = 60
_EVENTS = cast(Table, AuditEventRow.__table__)


@dataclass(frozen=True, slots=True)
class SlowTool:
    tool: str
    calls: int
    p50_ms: float
    max_ms: float


@dataclass(frozen=True, slots=True)
class LastHour:
    calls_per_minute: tuple[int, ...]
    denials_per_minute: tuple[int, ...]
    calls: int
    denials: int
    held: int
    errors: int
    slowest: tuple[SlowTool, ...]
    #: True when more calls happened than were read: the figures cover the newest `MAX_CALLS`.
    partial: bool


async def last_hour(database: Database, *, now: datetime | None = None) -> LastHour:
    now = now or datetime.now(UTC)
    since = now - timedelta(minutes=MINUTES)
    calls, outcomes = _EVENTS.alias("calls"), _EVENTS.alias("outcomes")
    query = (
        select(calls.c.time, calls.c.decision, calls.c.tool, outcomes.c.outcome, outcomes.c.content)
        .select_from(calls)
        .outerjoin(outcomes, and_(outcomes.c.call_id == calls.c.call_id, outcomes.c.kind == OUTCOME))
        .where(calls.c.kind == CALL, calls.c.time >= since)
        .order_by(calls.c.time.desc())
        .limit(MAX_CALLS + 1)
    )
    async with database.session() as session:
        rows = (await session.execute(query)).all()
    partial = len(rows) > MAX_CALLS
    per_minute = [0] * MINUTES
    denied_per_minute = [0] * MINUTES
    latencies: dict[str, list[float]] = defaultdict(list)
    held = errors = 0
    for row in rows[:MAX_CALLS]:
        minute = MINUTES - 1 - min(MINUTES - 1, int((now - row.time).total_seconds() // 60))
        per_minute[minute] += 1
        if row.decision == "deny":
            denied_per_minute[minute] += 1
        elif row.decision == "hold":
            held += 1
        if row.outcome not in (None, "ok", "denied", "held"):
            errors += 1
        if row.content is not None and row.tool:
            total = _total_ms(orjson.loads(row.content))
            if total is not None:
                latencies[row.tool].append(total)
    slowest = sorted(
        (SlowTool(tool, len(values), statistics.median(values), max(values)) for tool, values in latencies.items()),
        key=lambda slow: slow.p50_ms,
        reverse=True,
    )[:5]
    return LastHour(
        tuple(per_minute),
        tuple(denied_per_minute),
        sum(per_minute),
        sum(denied_per_minute),
        held,
        errors,
        tuple(slowest),
        partial,
    )


def _total_ms(event: dict[str, Any]) -> float | None:
    latency = (event.get("data") or {}).get("latency_ms") or {}
    total = latency.get("total")
    return float(total) if isinstance(total, int | float) else None


def sparkline(values: tuple[int, ...], *, width: int = 240, height: int = 40) -> str:
    """An SVG polyline's points for `values`, scaled to the box (the template draws it; no script needed)."""
    top = max(values) or 1
    step = width / max(1, len(values) - 1)
    return " ".join(
        f"{index * step:.1f},{height - (value / top) * (height - 2) - 1:.1f}" for index, value in enumerate(values)
    )
