"""Console sessions end after `[console] idle_timeout` without a request, and not while their person works.

The session's last use is written only now and then (not on every page load), so these tests move a
clock by hand across the idle timeout, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.console.sessions import ConsoleSessions
from gateway.identity.users import User
from gateway.settings.console import ConsoleSettings
from gateway.storage import Database

MARIA = User("usr_maria", "maria", ("finance-managers", "approver"))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 14, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.mark.anyio
@pytest.mark.parametrize("idle_timeout", [20.0, 1800.0])
async def test_a_session_in_use_outlives_the_idle_timeout_and_ends_once_left_idle(
    database: Database, idle_timeout: float
) -> None:
    clock = Clock()
    sessions = ConsoleSessions(database, ConsoleSettings(idle_timeout=idle_timeout), clock=clock)
    secret, _ = await sessions.open(MARIA, via="key")

    pause = idle_timeout * 0.4  # a page now and then, for three times the idle timeout
    for _ in range(8):
        clock.advance(pause)
        assert await sessions.find(secret) is not None, f"signed out while working, {pause:.0f}s after a page"

    clock.advance(idle_timeout)
    assert await sessions.find(secret) is None
