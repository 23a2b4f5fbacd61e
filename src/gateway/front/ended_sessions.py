"""Where the endpoint remembers the sealed sessions it ended, for every process behind it.

A sealed id cannot be un-issued, so an ended one must be refused until it would have expired,
by processes that start later too. The endpoint needs only these two operations; where the
record lives (the database's `ended_sessions` table, `gateway.storage.ended_sessions`) is the
composition root's choice.
"""

from __future__ import annotations

from typing import Protocol


class EndedSessions(Protocol):
    """Ended session ids with when each would have expired, in seconds since the epoch."""

    async def add(self, session_id: str, until: float) -> None:
        """Remember `session_id` as ended until `until`."""

    async def since_last_read(self) -> list[tuple[str, float]]:
        """The first time, every id still refused; after that, at least those ended since the previous read."""
