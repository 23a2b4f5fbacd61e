"""What the audit log says about agents: who has called, when last, how often, and what was denied.

Every read goes through an index and is bounded, however large the log grows:
- the agents the log names are found by a loose index scan of the `agent` column's index (one
  index seek per distinct agent, at most `MAX_AGENTS`), so agents that signed in with the
  identity provider's tokens, which have no API key, are known too;
- one agent's events are read through the index on (agent, time) alone, newest first, and at
  most a fixed number of them. The `kind` is checked on the rows read, not in the index search:
  given `kind` too, the planner may walk every call of every agent through (kind, time)
  looking for the rare agent's;
- the last hour of all agents' calls is read through (kind, time), at most `MAX_HOUR_CALLS`.
Figures built from a capped read say so (`partial`), rather than passing a part for the whole.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Table, and_, or_, select, text

from gateway.audit.entry import CALL, OUTCOME
from gateway.storage.database import Database
from gateway.storage.tables import AuditEventRow

#: At most this many distinct agents are read from the log for the list.
MAX_AGENTS = 200
#: At most this many calls of the last hour are read for the list's figures (newest first).
MAX_HOUR_CALLS = 5000
#: At most this many of one agent's events of the last day are read for its hourly figures.
MAX_DAY_EVENTS = 20_000
#: How far back among one agent's events its latest calls are looked for.
NEWEST_EVENTS = 1000
HOURS = 24

_EVENTS = cast(Table, AuditEventRow.__table__)

#: One index seek per distinct agent: the next name after the last one found, through the
#: partial index on (agent, time). Both SQLite and PostgreSQL walk it so; `SELECT DISTINCT`
#: would read the whole index.
_DISTINCT_AGENTS = text(
    """
    WITH RECURSIVE seen(agent, n) AS (
        SELECT MIN(agent), 1 FROM audit_events WHERE agent IS NOT NULL
        UNION ALL
        SELECT (SELECT MIN(e.agent) FROM audit_events e WHERE e.agent IS NOT NULL AND e.agent > seen.agent), n + 1
        FROM seen WHERE seen.agent IS NOT NULL AND n < :limit
    )
    SELECT agent FROM seen WHERE agent IS NOT NULL
    """
)


@dataclass(frozen=True, slots=True)
class AgentCall:
    """One call an agent made, as the audit log recorded it, with its outcome when it has one."""

    call_id: str | None
    time: datetime
    tool: str | None
    user: str | None
    decision: str | None
    outcome: str | None
    auth_method: str | None
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HourCounts:
    calls: int = 0
    denials: int = 0


@dataclass(frozen=True, slots=True)
class LastHourByAgent:
    counts: dict[str, HourCounts]
    #: More calls happened in the hour than were read: the figures cover the newest `MAX_HOUR_CALLS`.
    partial: bool


@dataclass(frozen=True, slots=True)
class Day:
    """One agent's calls and denials per hour over the last `HOURS` hours, oldest hour first."""

    calls_per_hour: tuple[int, ...]
    denials_per_hour: tuple[int, ...]
    #: The agent had more events in the day than were read: the figures cover the newest `MAX_DAY_EVENTS`.
    partial: bool

    @property
    def calls(self) -> int:
        return sum(self.calls_per_hour)

    @property
    def denials(self) -> int:
        return sum(self.denials_per_hour)


async def agents_in_log(database: Database, *, limit: int = MAX_AGENTS) -> tuple[list[str], bool]:
    """The agents the audit log names, in name order, and whether there were more than `limit`."""
    async with database.session() as session:
        names = list((await session.execute(_DISTINCT_AGENTS, {"limit": limit + 1})).scalars())
    return names[:limit], len(names) > limit


async def recent_calls(database: Database, agent: str, *, limit: int = 20) -> list[AgentCall]:
    """The agent's newest `limit` calls, newest first, looked for among its newest `NEWEST_EVENTS` events.

    A few more events than calls wanted are read first; only an agent whose newest events are
    mostly approvals of its calls needs the wider read.
    """
    picked: list[tuple[str, int]] = []
    for window in (limit * 2 + 8, NEWEST_EVENTS):
        newest = (
            select(_EVENTS.c.replica_id, _EVENTS.c.seq, _EVENTS.c.kind)
            .where(_EVENTS.c.agent == agent)
            .order_by(_EVENTS.c.time.desc(), _EVENTS.c.replica_id.desc(), _EVENTS.c.seq.desc())
            .limit(window)
        )
        async with database.session() as session:
            rows = (await session.execute(newest)).all()
        picked = [(row.replica_id, row.seq) for row in rows if row.kind == CALL][:limit]
        if len(picked) == limit or len(rows) < window:
            break
    if not picked:
        return []
    calls, outcomes = _EVENTS.alias("calls"), _EVENTS.alias("outcomes")
    query = (
        select(
            calls.c.call_id,
            calls.c.time,
            calls.c.tool,
            calls.c.user_id,
            calls.c.decision,
            calls.c.content,
            outcomes.c.outcome,
        )
        .select_from(calls)
        .outerjoin(outcomes, and_(outcomes.c.call_id == calls.c.call_id, outcomes.c.kind == OUTCOME))
        .where(or_(*(and_(calls.c.replica_id == replica, calls.c.seq == seq) for replica, seq in picked)))
        .order_by(calls.c.time.desc(), calls.c.replica_id.desc(), calls.c.seq.desc())
    )
    async with database.session() as session:
        found = (await session.execute(query)).all()
    return [_agent_call(row) for row in found]


async def last_call(database: Database, agent: str) -> AgentCall | None:
    """The agent's newest call: when it was last seen, and how it authenticated then."""
    found = await recent_calls(database, agent, limit=1)
    return found[0] if found else None


async def named_in_log(database: Database, agent: str) -> bool:
    """Whether any event names the agent (a call, or an approval of one of its calls)."""
    async with database.session() as session:
        # Ordered by time so both databases answer from the (agent, time) index, never by scanning the table.
        query = select(_EVENTS.c.seq).where(_EVENTS.c.agent == agent).order_by(_EVENTS.c.time.desc()).limit(1)
        found = await session.scalar(query)
    return found is not None


async def last_hour_by_agent(database: Database, *, now: datetime | None = None) -> LastHourByAgent:
    """Each agent's calls and denials in the last hour."""
    now = now or datetime.now(UTC)
    query = (
        select(_EVENTS.c.agent, _EVENTS.c.decision)
        .where(_EVENTS.c.kind == CALL, _EVENTS.c.time >= now - timedelta(hours=1))
        .order_by(_EVENTS.c.time.desc())
        .limit(MAX_HOUR_CALLS + 1)
    )
    async with database.session() as session:
        rows = (await session.execute(query)).all()
    calls: Counter[str] = Counter()
    denials: Counter[str] = Counter()
    for row in rows[:MAX_HOUR_CALLS]:
        if row.agent is None:
            continue
        calls[row.agent] += 1
        if row.decision == "deny":
            denials[row.agent] += 1
    counts = {agent: HourCounts(calls[agent], denials[agent]) for agent in calls}
    return LastHourByAgent(counts, len(rows) > MAX_HOUR_CALLS)


async def last_day(database: Database, agent: str, *, now: datetime | None = None) -> Day:
    """The agent's calls and denials in each of the last `HOURS` hours."""
    now = now or datetime.now(UTC)
    query = (
        select(_EVENTS.c.time, _EVENTS.c.kind, _EVENTS.c.decision)
        .where(_EVENTS.c.agent == agent, _EVENTS.c.time >= now - timedelta(hours=HOURS))
        .order_by(_EVENTS.c.time.desc())
        .limit(MAX_DAY_EVENTS + 1)
    )
    async with database.session() as session:
        rows = (await session.execute(query)).all()
    calls = [0] * HOURS
    denials = [0] * HOURS
    for row in rows[:MAX_DAY_EVENTS]:
        if row.kind != CALL:
            continue
        hours_ago = min(HOURS - 1, max(0, int((now - row.time).total_seconds() // 3600)))
        calls[HOURS - 1 - hours_ago] += 1
        if row.decision == "deny":
            denials[HOURS - 1 - hours_ago] += 1
    return Day(tuple(calls), tuple(denials), len(rows) > MAX_DAY_EVENTS)


def _agent_call(row: Any) -> AgentCall:
    data: dict[str, Any] = {}
    try:
        data = orjson.loads(row.content).get("data") or {}
    except (orjson.JSONDecodeError, AttributeError):
        data = {}
    roles = data.get("roles")
    return AgentCall(
        call_id=row.call_id,
        time=row.time,
        tool=row.tool,
        user=row.user_id,
        decision=row.decision,
        outcome=row.outcome,
        auth_method=data.get("auth_method") if isinstance(data.get("auth_method"), str) else None,
        roles=tuple(str(role) for role in roles) if isinstance(roles, list) else (),
    )
