"""Export: the audit log as JSON lines or CSV, streamed, written whole or not at all.

Events are read a page at a time in chain order (replica, seq), so memory stays flat for any
size of log, and written to a temporary file renamed into place only once the last page is
out (see `gateway.audit.atomic_file`): an export that fails or is interrupted leaves no file
that could be mistaken for a complete one.

JSON lines carry every field of every event, including `prev_hash` and `hash`, so the chain can
be recomputed from an export alone. CSV flattens the fields people filter on into columns and
keeps the rest as JSON; cells that a spreadsheet would run as a formula get a leading `'`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from sqlalchemy import and_, func, or_, select

from gateway.audit.atomic_file import atomic_output
from gateway.audit.chain import isoformat
from gateway.audit.entry import CALL, OUTCOME, AuditEvent, event_from_content
from gateway.errors import InvalidAuditQuery
from gateway.storage.database import Database
from gateway.storage.tables import AuditEventRow

ExportFormat = Literal["jsonl", "csv"]

#: Called after every page with (events written so far, total events to write).
ProgressCallback = Callable[[int, int], None]

CSV_COLUMNS = (
    "replica",
    "seq",
    "kind",
    "time",
    "call_id",
    "agent",
    "user",
    "roles",
    "method",
    "tool",
    "connector",
    "original_name",
    "workflow_id",
    "session_id",
    "request_id",
    "decision",
    "policy_ids",
    "reason",
    "reasoning",
    "arguments",
    "outcome",
    "total_ms",
    "backend_ms",
    "policy_ms",
    "result_bytes",
    "result_sha256",
    "error",
    "details",
    "prev_hash",
    "hash",
)
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class ExportReport:
    path: Path
    format: ExportFormat
    events: int


async def export(
    db: Database,
    out_path: Path | str,
    *,
    format: ExportFormat = "jsonl",
    progress: ProgressCallback | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page_size: int = 1000,
) -> ExportReport:
    """Write the log's events (optionally only those recorded in [since, until)) to `out_path`."""
    if format not in ("jsonl", "csv"):
        raise InvalidAuditQuery(f"export format must be 'jsonl' or 'csv', not {format!r}")
    if page_size < 1:
        raise InvalidAuditQuery("page_size must be positive")
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidAuditQuery(f"'{name}' must carry a time zone")
    path = Path(out_path)
    table = AuditEventRow.__table__
    conditions = []
    if since is not None:
        conditions.append(table.c.time >= since)
    if until is not None:
        conditions.append(table.c.time < until)
    async with db.session() as session:
        total = (await session.execute(select(func.count()).select_from(table).where(*conditions))).scalar_one()
    written = 0
    with atomic_output(path) as stream:
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=True)
        writer = csv.writer(text) if format == "csv" else None
        if writer is not None:
            writer.writerow(CSV_COLUMNS)
        after: tuple[str, int] | None = None
        while True:
            query = select(table.c.replica_id, table.c.seq, table.c.content, table.c.prev_hash, table.c.hash).where(
                *conditions
            )
            if after is not None:
                query = query.where(
                    or_(
                        table.c.replica_id > after[0],
                        and_(table.c.replica_id == after[0], table.c.seq > after[1]),
                    )
                )
            async with db.session() as session:
                rows = (await session.execute(query.order_by(table.c.replica_id, table.c.seq).limit(page_size))).all()
            for row in rows:
                event = event_from_content(row.content, prev_hash=row.prev_hash, hash=row.hash)
                if writer is not None:
                    writer.writerow(_csv_row(event))
                else:
                    text.write(orjson.dumps(event.to_json()).decode("utf-8") + "\n")
            written += len(rows)
            if progress is not None:
                progress(written, max(total, written))
            if len(rows) < page_size:
                break
            after = (rows[-1].replica_id, rows[-1].seq)
        text.flush()
        text.detach()
    return ExportReport(path, format, written)


def _csv_row(event: AuditEvent) -> list[str]:
    data = dict(event.data)
    cells: dict[str, Any] = {
        "replica": event.replica_id,
        "seq": event.seq,
        "kind": event.kind,
        "time": isoformat(event.time),
        "call_id": event.call_id,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }
    if event.kind == CALL:
        client = data.pop("client", None) or {}
        data.pop("auth_method", None)
        cells.update(
            agent=data.pop("agent", None),
            user=data.pop("user", None),
            roles=" ".join(data.pop("roles", None) or ()),
            method=data.pop("method", None),
            tool=data.pop("name", None),
            connector=data.pop("connector", None),
            original_name=data.pop("original_name", None),
            workflow_id=data.pop("workflow_id", None),
            session_id=data.pop("session_id", None),
            request_id=data.pop("request_id", None),
            decision=data.pop("decision", None),
            policy_ids=" ".join(data.pop("policy_ids", None) or ()),
            reason=data.pop("reason", None),
            reasoning=data.pop("reasoning", None),
            arguments=_json(data.pop("arguments", None)),
        )
        data["client"] = client
    elif event.kind == OUTCOME:
        latency = data.pop("latency_ms", None) or {}
        result = data.pop("result", None) or {}
        cells.update(
            outcome=data.pop("outcome", None),
            total_ms=latency.get("total"),
            backend_ms=latency.get("backend"),
            policy_ms=latency.get("policy"),
            result_bytes=result.get("bytes"),
            result_sha256=result.get("sha256"),
            error=_json(data.pop("error", None)),
        )
    cells["details"] = _json(data) if data else None
    return [_cell(cells.get(column)) for column in CSV_COLUMNS]


def _json(value: Any) -> str | None:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8") if value is not None else None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text
