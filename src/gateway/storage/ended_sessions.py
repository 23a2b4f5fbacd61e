"""Ended sealed sessions in the database, so that every process refuses them, whenever it started.

Signals tell the processes running when a session ends; a process that starts later, or that
missed the signal while its listening connection was down, or a single gateway after a restart,
learns of it here: each process reads the ended ids at start and then, every few seconds, the
ones ended since its previous read, so a reload costs what is new rather than the whole table.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from gateway.storage.database import Database
from gateway.storage.tables import EndedSessionRow

#: How far before the previous read each later read reaches back. A row becomes visible when its
#: transaction commits, a little after its `ended_at`, and hosts' clocks differ; the overlap covers
#: both (reading a row twice is harmless). A replica whose clock runs more than this behind the
#: others' can have its ends missed by reloads: they still reach running processes by signal.
READ_OVERLAP = timedelta(seconds=60)


class EndedSessionsTable:
    """Reads and writes the `ended_sessions` table; times are seconds since the epoch."""

    def __init__(self, database: Database, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._database = database
        self._clock = clock
        self._previous_read: datetime | None = None

    async def add(self, session_id: str, until: float) -> None:
        """Remember `session_id` as ended until `until`; ids that have expired meanwhile are dropped."""
        now = self._clock()
        row = {"session_id": session_id, "until": datetime.fromtimestamp(until, UTC), "ended_at": now}
        insert = postgresql.insert if self._database.dialect == "postgresql" else sqlite.insert
        async with self._database.session() as session, session.begin():
            await session.execute(insert(EndedSessionRow).values(row).on_conflict_do_nothing())
            await session.execute(delete(EndedSessionRow).where(EndedSessionRow.until <= now))

    async def since_last_read(self) -> list[tuple[str, float]]:
        """The first time, every id still refused with when it would have expired; after that, only
        those ended since the previous read (and within `READ_OVERLAP` before it)."""
        started = self._clock()
        previous = self._previous_read
        ended = await self._read(None if previous is None else previous - READ_OVERLAP)
        self._previous_read = started
        return ended

    async def _read(self, ended_after: datetime | None) -> list[tuple[str, float]]:
        query = select(EndedSessionRow.session_id, EndedSessionRow.until).where(EndedSessionRow.until > self._clock())
        if ended_after is not None:
            query = query.where(EndedSessionRow.ended_at > ended_after)
        async with self._database.session() as session:
            return [(session_id, until.timestamp()) for session_id, until in await session.execute(query)]
