"""Reading the audit log: search calls, fetch one, follow new events as they are written.

Search works on calls joined with their outcomes, newest first, filtered on the indexed
columns; pages are cut by an opaque cursor (keyset pagination on time, replica, seq), so
paging stays cheap however deep it goes and is not thrown off by events written meanwhile.
Events that stand alone (refused authentications, recoveries after a crash) are searched by
kind and time the same way (`search_events`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

import anyio
import orjson
from sqlalchemy import FromClause, Row, Select, and_, func, or_, select

from gateway.audit.entry import (
    APPROVAL,
    AUTH_REFUSED,
    CALL,
    CONSOLE,
    OUTCOME,
    RECOVERED,
    AuditCall,
    AuditEvent,
    event_from_content,
)
from gateway.errors import InvalidAuditQuery
from gateway.storage.database import Database
from gateway.storage.tables import AuditEventRow

if TYPE_CHECKING:
    #: A query of any columns: search and paging work on the rows whatever they select.
    _Query: TypeAlias = Select[*tuple[Any, ...]]

MAX_LIMIT = 1000

#: Kinds of event that make sense on their own, without a call to join them to.
STANDALONE_KINDS = (AUTH_REFUSED, RECOVERED, APPROVAL, CONSOLE)


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """What a search selects; every field is optional and they combine with AND."""

    agent: str | None = None
    user: str | None = None
    tool: str | None = None
    decision: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    workflow: str | None = None
    text_in_reasoning: str | None = None


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of calls, newest first; pass `next_cursor` to get the next (None: no more)."""

    calls: tuple[AuditCall, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of events of one kind, newest first; pass `next_cursor` to get the next (None: no more)."""

    events: tuple[AuditEvent, ...]
    next_cursor: str | None


async def search(
    db: Database,
    *,
    agent: str | None = None,
    user: str | None = None,
    tool: str | None = None,
    decision: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    workflow: str | None = None,
    text_in_reasoning: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> SearchPage:
    """Calls matching every given filter, joined with their outcomes, newest first."""
    _check_limit(limit)
    filters = SearchFilters(agent, user, tool, decision, outcome, since, until, workflow, text_in_reasoning)
    query, calls = _calls_query(filters)
    found, next_cursor = await _fetch_page(db, _newest_first_page(query, calls, cursor, limit), _call_from_row, limit)
    return SearchPage(found, next_cursor)


async def search_events(
    db: Database,
    kind: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> EventPage:
    """Events of one standalone kind (see `STANDALONE_KINDS`) in a time range, newest first."""
    if kind not in STANDALONE_KINDS:
        raise InvalidAuditQuery(f"events of kind {kind!r} are not searched on their own; use one of {STANDALONE_KINDS}")
    _check_limit(limit)
    events = AuditEventRow.__table__.alias("events")
    query = select(events).where(events.c.kind == kind)
    if since is not None:
        query = query.where(events.c.time >= _aware(since, "since"))
    if until is not None:
        query = query.where(events.c.time < _aware(until, "until"))
    found, next_cursor = await _fetch_page(db, _newest_first_page(query, events, cursor, limit), _event_from_row, limit)
    return EventPage(found, next_cursor)


class _Positioned(Protocol):
    """What a page's cursor is made of: where the last item stands in the log."""

    @property
    def time(self) -> datetime: ...
    @property
    def replica_id(self) -> str: ...
    @property
    def seq(self) -> int: ...


_Item = TypeVar("_Item", bound=_Positioned)


async def _fetch_page(
    db: Database, query: _Query, decode: Callable[[Any], _Item], limit: int
) -> tuple[tuple[_Item, ...], str | None]:
    """Run a `_newest_first_page` query: the page's items, and the cursor after them when more follow."""
    async with db.session() as session:
        rows = (await session.execute(query)).all()
    found = tuple(decode(row) for row in rows[:limit])
    next_cursor = _encode_cursor(found[-1].time, found[-1].replica_id, found[-1].seq) if len(rows) > limit else None
    return found, next_cursor


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidAuditQuery(f"limit must be between 1 and {MAX_LIMIT}")


def _newest_first_page(query: _Query, rows: FromClause, cursor: str | None, limit: int) -> _Query:
    """`query` ordered newest first, after `cursor`, one row more than `limit` (to tell whether more follow)."""
    if cursor is not None:
        time, replica_id, seq = _decode_cursor(cursor)
        query = query.where(
            or_(
                rows.c.time < time,
                and_(
                    rows.c.time == time,
                    or_(rows.c.replica_id < replica_id, and_(rows.c.replica_id == replica_id, rows.c.seq < seq)),
                ),
            )
        )
    return query.order_by(rows.c.time.desc(), rows.c.replica_id.desc(), rows.c.seq.desc()).limit(limit + 1)


async def get_call(db: Database, call_id: str) -> AuditCall | None:
    """One call by its id, with its outcome; None when no such call was recorded."""
    query, calls = _calls_query(SearchFilters())
    query = query.where(calls.c.call_id == call_id).limit(1)
    async with db.session() as session:
        row = (await session.execute(query)).first()
    return _call_from_row(row) if row is not None else None


async def tail(
    db: Database,
    *,
    follow: bool = True,
    backlog: int = 10,
    kinds: Sequence[str] = (CALL, OUTCOME),
    poll_interval: float = 0.5,
) -> AsyncIterator[AuditEvent]:
    """The newest `backlog` events, then (with `follow`) every new one as it is committed.

    New events are found per replica by `seq`, which each replica assigns in commit order, so
    none is skipped even when several replicas write at once.
    """
    table = AuditEventRow.__table__
    async with db.session() as session:
        heads = dict(
            (
                await session.execute(select(table.c.replica_id, func.max(table.c.seq)).group_by(table.c.replica_id))
            ).all()
        )
        recent: Sequence[Row[*tuple[Any, ...]]] = ()
        if backlog > 0:
            recent = (
                await session.execute(
                    select(table)
                    .where(table.c.kind.in_(kinds))
                    .order_by(table.c.time.desc(), table.c.replica_id.desc(), table.c.seq.desc())
                    .limit(backlog)
                )
            ).all()
    for row in reversed(recent):
        yield _event_from_row(row)
    while follow:
        async with db.session() as session:
            newer = [and_(table.c.replica_id == replica, table.c.seq > seq) for replica, seq in heads.items()]
            if heads:
                newer.append(table.c.replica_id.not_in(list(heads)))
            query = select(table).order_by(table.c.replica_id, table.c.seq).limit(MAX_LIMIT)
            if newer:
                query = query.where(or_(*newer))
            rows = (await session.execute(query)).all()
        for row in sorted(rows, key=lambda row: row.time):
            heads[row.replica_id] = max(heads.get(row.replica_id, 0), row.seq)
            if row.kind in kinds:
                yield _event_from_row(row)
        if len(rows) < MAX_LIMIT:
            await anyio.sleep(poll_interval)


def _calls_query(filters: SearchFilters) -> tuple[_Query, FromClause]:
    calls = AuditEventRow.__table__.alias("calls")
    outcomes = AuditEventRow.__table__.alias("outcomes")
    query = (
        select(
            calls.c.call_id,
            calls.c.replica_id,
            calls.c.seq,
            calls.c.time,
            calls.c.content,
            outcomes.c.time.label("outcome_time"),
            outcomes.c.content.label("outcome_content"),
        )
        .select_from(calls)
        .outerjoin(outcomes, and_(outcomes.c.call_id == calls.c.call_id, outcomes.c.kind == OUTCOME))
        .where(calls.c.kind == CALL)
    )
    for column, value in (
        (calls.c.agent, filters.agent),
        (calls.c.user_id, filters.user),
        (calls.c.tool, filters.tool),
        (calls.c.decision, filters.decision),
        (calls.c.workflow_id, filters.workflow),
        (outcomes.c.outcome, filters.outcome),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.since is not None:
        query = query.where(calls.c.time >= _aware(filters.since, "since"))
    if filters.until is not None:
        query = query.where(calls.c.time < _aware(filters.until, "until"))
    if filters.text_in_reasoning:
        pattern = "%" + _escape_like(filters.text_in_reasoning.lower()) + "%"
        query = query.where(func.lower(calls.c.reasoning).like(pattern, escape="\\"))
    return query, calls


def _call_from_row(row: Any) -> AuditCall:
    call = orjson.loads(row.content)
    outcome = orjson.loads(row.outcome_content) if row.outcome_content is not None else None
    return AuditCall(
        call_id=row.call_id,
        replica_id=row.replica_id,
        seq=row.seq,
        time=row.time,
        call=call["data"],
        outcome=outcome["data"] if outcome else None,
        outcome_time=row.outcome_time,
    )


def _event_from_row(row: Any) -> AuditEvent:
    return event_from_content(row.content, prev_hash=row.prev_hash, hash=row.hash)


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise InvalidAuditQuery(f"'{name}' must carry a time zone (e.g. 2026-12-01T10:00:00+00:00)")
    return moment


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _encode_cursor(time: datetime, replica_id: str, seq: int) -> str:
    raw = orjson.dumps([time.isoformat(), replica_id, seq])
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        time, replica_id, seq = orjson.loads(raw)
        moment = datetime.fromisoformat(time)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidAuditQuery("the cursor is not one this gateway returned") from None
    if not isinstance(replica_id, str) or not isinstance(seq, int) or moment.tzinfo is None:
        raise InvalidAuditQuery("the cursor is not one this gateway returned")
    return moment, replica_id, seq


_DURATION = re.compile(r"(\d+)\s*(s|m|h|d|w)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`90d`, `12h`, `30m`, `45s`, `2w` (or combinations such as `1d12h`) as a timedelta."""
    compact = text.strip().lower().replace(" ", "")
    if not compact or _DURATION.sub("", compact):
        raise InvalidAuditQuery(f"{text!r} is not a duration: use a number and a unit, e.g. 90d, 12h, 30m")
    return timedelta(seconds=sum(int(count) * _UNITS[unit] for count, unit in _DURATION.findall(compact)))


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC when no zone is given) or a duration meaning that long ago (`15m`, `7d`)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return (now or datetime.now(UTC)) - parse_duration(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
