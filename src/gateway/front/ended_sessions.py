"""Ended sealed sessions in the database, so that every process refuses them, whenever it started.

Signals tell the processes running when a session ends; a process that starts later, or that
missed the signal while its listening connection was down, or a single gateway after a restart,
learns of it here: each process loads the ended ids at start and again every few seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from gateway.storage.database import Database
from gateway.storage.tables import EndedSessionRow


class EndedSessions:
    """Reads and writes the `ended_sessions` table; times are seconds since the epoch."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def add(self, session_id: str, until: float) -> None:
        """Remember `session_id` as ended until `until`; ids that have expired meanwhile are dropped."""
        row = {"session_id": session_id, "until": datetime.fromtimestamp(until, UTC)}
        insert = postgresql.insert if self._database.dialect == "postgresql" else sqlite.insert
        async with self._database.session() as session, session.begin():
            await session.execute(insert(EndedSessionRow).values(row).on_conflict_do_nothing())
            await session.execute(delete(EndedSessionRow).where(EndedSessionRow.until <= datetime.now(UTC)))

    async def current(self) -> list[tuple[str, float]]:
        """The ids still refused, with when each would have expired."""
        async with self._database.session() as session:
            rows = await session.execute(
                select(EndedSessionRow.session_id, EndedSessionRow.until).where(
                    EndedSessionRow.until > datetime.now(UTC)
                )
            )
            return [(session_id, until.timestamp()) for session_id, until in rows]
