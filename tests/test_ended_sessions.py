"""The ended-sessions table on real databases: what a process reads at start, and on each reload."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from gateway.storage import Database
from gateway.storage.ended_sessions import READ_OVERLAP, EndedSessionsTable
from gateway.storage.tables import EndedSessionRow

pytestmark = pytest.mark.anyio


class ManualClock:
    """Wall-clock time the test sets by hand: reads are told apart without waiting."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def _ids(read: list[tuple[str, float]]) -> list[str]:
    return sorted(session_id for session_id, _ in read)


async def test_the_first_read_has_every_session_still_refused_and_later_ones_only_the_new(database: Database):
    clock = ManualClock()
    ended = EndedSessionsTable(database, clock=clock)
    day = timedelta(days=1).total_seconds()
    await ended.add("first", clock.now.timestamp() + day)
    await ended.add("gone", clock.now.timestamp() + 60)
    clock.advance(timedelta(minutes=5))

    reader = EndedSessionsTable(database, clock=clock)  # another process, starting now
    assert _ids(await reader.since_last_read()) == ["first"]  # "gone" has expired

    clock.advance(timedelta(minutes=5))
    await ended.add("second", clock.now.timestamp() + day)
    clock.advance(timedelta(seconds=10))

    assert _ids(await reader.since_last_read()) == ["second"]
    assert _ids(await reader.since_last_read()) == ["second"]  # within the overlap: read again, harmless
    clock.advance(READ_OVERLAP * 2)
    assert _ids(await reader.since_last_read()) == ["second"]  # still within the overlap of the read before
    assert await reader.since_last_read() == []


async def test_a_session_recorded_with_a_time_just_before_the_previous_read_is_still_read(database: Database):
    """A row committed late, or written by a host whose clock runs behind, carries an earlier `ended_at`."""
    clock = ManualClock()
    reader = EndedSessionsTable(database, clock=clock)
    assert await reader.since_last_read() == []

    behind = ManualClock()
    behind.now = clock.now - READ_OVERLAP / 2
    await EndedSessionsTable(database, clock=behind).add("late", clock.now.timestamp() + 3600)
    clock.advance(timedelta(seconds=10))

    assert _ids(await reader.since_last_read()) == ["late"]


async def test_sessions_ended_before_the_upgrade_are_read_at_start(database: Database):
    """Rows from before revision 0006 have no `ended_at`: a starting process must still refuse them."""
    until = datetime.now(UTC) + timedelta(hours=1)
    async with database.session() as session, session.begin():
        await session.execute(insert(EndedSessionRow).values(session_id="old", until=until, ended_at=None))

    reader = EndedSessionsTable(database)
    assert [(session_id, round(expiry)) for session_id, expiry in await reader.since_last_read()] == [
        ("old", round(until.timestamp()))
    ]
    assert await reader.since_last_read() == []
