"""How many tool calls each agent made lately, counted in process on every call (`context.rate`).

Every tool call that reaches a decision is counted here, before the policies see it, so the
counts a policy reads include the call being decided; refused calls count too (a burst of
refused calls is a burst). Counting is two dictionary lookups and four ring increments (see
`rate_window.py`): no database query, no lock, nothing that grows with the traffic.

Each agent has one track for all its calls and one per tool it called; a track holds a minute
(60 one-second buckets) and an hour (60 one-minute buckets). Several gateway processes share
their counts through the database (`rate_sync.py`): each writes its own tracks' buckets and adds
the others' to what it counts, so replicas enforce one limit together, give or take the calls
made on another replica since it last wrote and this one last read.

Times are wall-clock seconds since the epoch, the same on every host (NTP), so buckets written
by one process line up with another's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.calls import RateCounts
from gateway.coordination.rate_window import SlidingCount

#: The tool of an agent's track that counts its calls to every tool.
ALL_TOOLS = ""
#: Buckets per window: 60 seconds in the minute, 60 minutes in the hour.
MINUTE_BUCKETS = 60
HOUR_BUCKETS = 60

Key = tuple[str, str]
Buckets = list[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class TrackCounts:
    """One track's own buckets, as written to the database: (second, count) and (minute, count) pairs."""

    agent: str
    tool: str
    seconds: Buckets
    minutes: Buckets


class _Track:
    """One agent's calls (to one tool, or to all): the last minute by the second, the last hour by the minute."""

    __slots__ = ("hour", "minute")

    def __init__(self) -> None:
        self.minute = SlidingCount(MINUTE_BUCKETS)
        self.hour = SlidingCount(HOUR_BUCKETS)


class RateCounter:
    """The recent calls of every agent this process saw, plus the other processes' as last read."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tracks: dict[Key, _Track] = {}
        #: Tool tracks counted since they were last taken by `changes` (the agent tracks are their sums).
        self._changed: set[Key] = set()

    def count(self, agent: str, tool: str) -> RateCounts:
        """Count one call of `agent` to `tool` now; the counts it brings the agent's to, this call included."""
        second = int(self._clock())
        minute = second // 60
        tracks = self._tracks
        key = (agent, tool)
        overall = tracks.get((agent, ALL_TOOLS))
        if overall is None:
            overall = tracks[(agent, ALL_TOOLS)] = _Track()
        own = tracks.get(key)
        if own is None:
            own = tracks[key] = _Track()
        self._changed.add(key)
        return RateCounts(
            overall.minute.add(second), overall.hour.add(minute), own.minute.add(second), own.hour.add(minute)
        )

    def counts(self, agent: str, tool: str) -> RateCounts:
        """The counts now without counting a call (for people looking, and for tests)."""
        second = int(self._clock())
        overall, own = self._track(agent, ALL_TOOLS), self._track(agent, tool)
        return RateCounts(
            _total(overall.minute, second), _total(overall.hour, second // 60),
            _total(own.minute, second), _total(own.hour, second // 60),
        )  # fmt: skip

    def now(self) -> tuple[int, int]:
        """The current second and minute, as the counts place them."""
        second = int(self._clock())
        return second, second // 60

    def changes(self) -> list[TrackCounts]:
        """This process's buckets of every tool track counted since the previous call, to be written.

        Taken, not peeked: a caller that fails to write them gives them back with `unwritten`.
        """
        changed, self._changed = self._changed, set()
        second, minute = self.now()
        taken = []
        for agent, tool in changed:
            track = self._tracks.get((agent, tool))
            if track is None:
                continue
            track.minute.advance(second)
            track.hour.advance(minute)
            taken.append(TrackCounts(agent, tool, track.minute.local_counts(), track.hour.local_counts()))
        return taken

    def unwritten(self, changes: Iterable[TrackCounts]) -> None:
        """Changes `changes` took that could not be written: they are taken again next time."""
        self._changed.update((change.agent, change.tool) for change in changes)

    def restore(self, counts: TrackCounts) -> None:
        """Buckets this process wrote before it restarted (under the same replica id): counted as its own."""
        second, minute = self.now()
        for tool in (counts.tool, ALL_TOOLS):
            track = self._track(counts.agent, tool)
            track.minute.restore(counts.seconds, second)
            track.hour.restore(counts.minutes, minute)

    def set_remote(self, agent: str, tool: str, seconds: Buckets, minutes: Buckets) -> None:
        """The other processes' buckets for one track (`tool` is `ALL_TOOLS` for the agent's sum), summed."""
        second, minute = self.now()
        track = self._track(agent, tool)
        track.minute.set_remote(seconds, second)
        track.hour.set_remote(minutes, minute)

    def forget_idle(self) -> int:
        """Drop the tracks with nothing left in their hour (memory stays bounded by the active agents)."""
        _, minute = self.now()
        idle = [key for key, track in self._tracks.items() if track.hour.expired(minute) and key not in self._changed]
        for key in idle:
            del self._tracks[key]
        return len(idle)

    def _track(self, agent: str, tool: str) -> _Track:
        track = self._tracks.get((agent, tool))
        if track is None:
            track = self._tracks[(agent, tool)] = _Track()
        return track


def _total(window: SlidingCount, slot: int) -> int:
    window.advance(slot)
    return window.total
