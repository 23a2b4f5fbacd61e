"""Reading the audit log: search calls, fetch one, follow new events as they are written.

Search works on calls joined with their outcomes, newest first, filtered on the indexed
columns; pages are cut by an opaque cursor (keyset pagination on time, replica, seq), so
paging stays cheap however deep it goes and is not thrown off by events written meanwhile.
On SQLite a search by agent, user, tool or workflow reads that column's index: SQLite's planner
(without statistics) would otherwise walk every call newest first through the (kind, time)
index, which for a name that matches nothing is the whole log. Filters no index serves (decision,
outcome, text) can be bounded with `scan_limit`, so a value that matches nothing costs one window
of calls, not the whole log.
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
from sqlalchemy import ColumnElement, FromClause, Row, Select, and_, func, literal_column, or_, select

from gateway.audit.entry import (
    APPROVAL,
    AUTH_REFUSED,
    CALL,
    CONSOLE,
    OUTCOME,
    RECOVERED,
    SUSPENSION,
    TOOL_PIN,
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
STANDALONE_KINDS = (AUTH_REFUSED, RECOVERED, APPROVAL, CONSOLE, SUSPENSION, TOOL_PIN)


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
    """One page of calls, newest first; pass `next_cursor` to get the next (None: no more).

    `examined_until` is set when a `scan_limit` cut the page short: calls were examined back to
    that time only, so older matches may follow `next_cursor` although the page has fewer than asked.
    """

    calls: tuple[AuditCall, ...]
    next_cursor: str | None
    examined_until: datetime | None = None


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
    scan_limit: int | None = None,
) -> SearchPage:
    """Calls matching every given filter, joined with their outcomes, newest first.

    With `scan_limit`, a search that filters on what no index serves alone (decision, outcome,
    reasoning text, or several indexed columns at once) examines at most that many of the calls the
    indexes select; when they hold fewer than `limit` matches, the page is short and `next_cursor`
    continues after them (see `SearchPage.examined_until`). Without it, such a search reads on
    until the page is full, through the whole log if need be.
    """
    _check_limit(limit)
    if scan_limit is not None and scan_limit < 1:
        raise InvalidAuditQuery("scan_limit must be positive")
    filters = SearchFilters(agent, user, tool, decision, outcome, since, until, workflow, text_in_reasoning)
    sqlite = db.dialect == "sqlite"
    query, calls = _calls_query(filters, sqlite=sqlite)
    window_end = None
    if scan_limit is not None and _needs_window(filters):
        window_end = await _window_end(db, filters, cursor, scan_limit, sqlite=sqlite)
        if window_end is not None:
            query = query.where(calls.c.time >= window_end)
    found, next_cursor = await _fetch_page(db, _newest_first_page(query, calls, cursor, limit), _call_from_row, limit)
    if next_cursor is None and window_end is not None:
        # Every call at `window_end` was examined: go on strictly before it (no replica sorts below "").
        return SearchPage(found, _encode_cursor(window_end, "", 0), window_end)
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
        query = query.where(_after(rows, cursor))
    return query.order_by(rows.c.time.desc(), rows.c.replica_id.desc(), rows.c.seq.desc()).limit(limit + 1)


def _after(rows: FromClause, cursor: str) -> ColumnElement[bool]:
    """The rows older than the position `cursor` names (time, then replica, then seq)."""
    time, replica_id, seq = _decode_cursor(cursor)
    return or_(
        rows.c.time < time,
        and_(
            rows.c.time == time,
            or_(rows.c.replica_id < replica_id, and_(rows.c.replica_id == replica_id, rows.c.seq < seq)),
        ),
    )


def _indexed(filters: SearchFilters) -> list[tuple[str, str]]:
    """The (column, value) filters a partial (column, time) index serves, most selective first.

    Workflows name one task, users and tools are many, agents few: the first one given is the
    index SQLite is steered to, and the rest are checked on the rows it reads.
    """
    given = (
        ("workflow_id", filters.workflow),
        ("user_id", filters.user),
        ("tool", filters.tool),
        ("agent", filters.agent),
    )
    return [(column, value) for column, value in given if value is not None]


def _needs_window(filters: SearchFilters) -> bool:
    """Whether some filter is checked row by row, so that a value nothing matches would read on and on."""
    residual = filters.decision or filters.outcome or filters.text_in_reasoning
    return bool(residual) or len(_indexed(filters)) > 1


async def _window_end(
    db: Database, filters: SearchFilters, cursor: str | None, scan_limit: int, *, sqlite: bool
) -> datetime | None:
    """The time of the `scan_limit`-th call the indexed filters select after `cursor`; None when fewer remain."""
    calls = AuditEventRow.__table__.alias("calls")
    query = select(calls.c.time).where(_is_call(calls, filters, sqlite=sqlite))
    indexed = _indexed(filters)
    if indexed:
        column, value = indexed[0]
        query = query.where(calls.c[column] == value)
    query = _in_time_range(query, calls, filters)
    if cursor is not None:
        query = query.where(_after(calls, cursor))
    query = query.order_by(calls.c.time.desc()).offset(scan_limit - 1).limit(1)
    async with db.session() as session:
        moment: datetime | None = (await session.execute(query)).scalar()
    return moment


def _is_call(calls: FromClause, filters: SearchFilters, *, sqlite: bool) -> ColumnElement[bool]:
    """`kind = 'call'`; on SQLite, written so that it cannot pick the index when a column's index serves better.

    SQLite's planner has no statistics and prefers the (kind, time) index, which also gives the
    order wanted; the unary `+` (SQLite's documented way to rule an index out) leaves it the
    (column, time) index of the filter, which gives the same order over far fewer rows.
    """
    if sqlite and _indexed(filters):
        return _unindexed("kind") == CALL
    return calls.c.kind == CALL


def _unindexed(column: str) -> ColumnElement[Any]:
    """`column` of the `calls` alias as SQLite's unary `+` writes it: the same value, but no index is used for it."""
    return literal_column(f"+calls.{column}")


def _in_time_range(query: _Query, calls: FromClause, filters: SearchFilters) -> _Query:
    if filters.since is not None:
        query = query.where(calls.c.time >= _aware(filters.since, "since"))
    if filters.until is not None:
        query = query.where(calls.c.time < _aware(filters.until, "until"))
    return query


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


def _calls_query(filters: SearchFilters, *, sqlite: bool = False) -> tuple[_Query, FromClause]:
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
        .where(_is_call(calls, filters, sqlite=sqlite))
    )
    for position, (name, value) in enumerate(_indexed(filters)):
        # On SQLite only the first is read through its index (see `_is_call`); the rest are checked on its rows.
        query = query.where((_unindexed(name) if sqlite and position else calls.c[name]) == value)
    if filters.decision is not None:
        query = query.where(calls.c.decision == filters.decision)
    if filters.outcome is not None:
        query = query.where(outcomes.c.outcome == filters.outcome)
    query = _in_time_range(query, calls, filters)
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
