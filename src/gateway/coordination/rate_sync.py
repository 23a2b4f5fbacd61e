"""Rate counts shared between gateway processes through the database, about once a second.

Each process counts its own calls in memory (`rates.py`) and, every `interval` seconds, writes
the buckets of the tracks it counted in since its last write (a row per agent and tool, under a
`version` that rises with every write) and reads the rows the other processes wrote since it
last looked (per replica, the versions above the highest it saw). What it read becomes the
other processes' part of its counts. So a call made on replica A is counted on replica B within
two intervals (A writes within one, B reads within the next): two replicas enforce one limit
together, give or take what the other did in the last two seconds or so.

At start a process also reads back the rows of its own replica id (a configured `[audit]
replica_id` survives restarts), so a restart does not forget the last hour; rows of processes
that are gone keep counting for the others until their buckets leave the window, and are deleted
a while after that.

A failed write or read is logged and retried at the next interval; calls are counted locally
meanwhile (what was not written is written next time), so a database outage only delays what
the other replicas see.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import anyio
import anyio.abc
import orjson
from sqlalchemy import Table, and_, delete, not_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from gateway.coordination.rates import ALL_TOOLS, Buckets, RateCounter, TrackCounts
from gateway.errors import GatewayError
from gateway.storage.database import Database
from gateway.storage.tables import RateCountRow

logger = logging.getLogger("gateway.coordination.rates")

RATE_COUNTS = cast(Table, RateCountRow.__table__)

#: Rows not written for this long hold no bucket any window still counts: they are deleted.
STALE_AFTER = timedelta(hours=2)
#: Syncs between two deletions of stale rows, and between two sweeps of idle tracks in memory.
_HOUSEKEEPING_EVERY = 60


class RateSync:
    """Writes this process's rate buckets and reads the other processes'; see the module docstring."""

    def __init__(
        self,
        database: Database,
        counter: RateCounter,
        *,
        replica: str,
        interval: float,
        clock: Callable[[], float] = time.time,
        needed: Callable[[], bool] = lambda: True,
    ) -> None:
        self._database = database
        self._needed = needed
        self._counter = counter
        self._replica = replica
        self._interval = interval
        self._clock = clock
        self._version = 0
        #: The highest version read of each other replica.
        self._seen: dict[str, int] = {}
        #: The last buckets read of each other replica's tracks: by agent, then tool, then replica.
        self._remote: dict[str, dict[str, dict[str, tuple[Buckets, Buckets]]]] = defaultdict(lambda: defaultdict(dict))
        self._syncs = 0

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Restore this replica's own rows, then sync every interval until cancelled (writing once more then)."""
        await self._guarded(self.restore, "read back")
        task_status.started()
        try:
            while True:
                await self._guarded(self.sync, "shared")
                await anyio.sleep(self._interval)
        finally:
            if self._needed():
                with anyio.move_on_after(2, shield=True):  # what was counted since the last write is not lost
                    await self._guarded(self.write, "written at shutdown")

    async def sync(self) -> None:
        """One round: write this process's changes, read the others'; now and then, tidy up.

        While no loaded policy reads `context.rate` nobody needs the others' counts, and the
        round touches no database: a write transaction a second competes with the audit log's
        commits for SQLite's one writer. Calls are still counted in memory, and what was counted
        meanwhile is written at the first round a policy needs it.
        """
        needed = self._needed()
        if needed:
            await self.write()
            await self.read()
        self._syncs += 1
        if self._syncs % _HOUSEKEEPING_EVERY == 0:
            self._counter.forget_idle()
            if needed:
                await self._delete_stale()

    async def restore(self) -> None:
        """Count this replica's own rows (written before a restart) as this process's, and go on from their version."""
        query = select(RATE_COUNTS).where(RATE_COUNTS.c.replica == self._replica)
        async with self._database.session() as session:
            rows = (await session.execute(query)).mappings().all()
        for row in rows:
            self._version = max(self._version, row["version"])
            self._counter.restore(TrackCounts(row["agent"], row["tool"], *_buckets(row)))
        await self.read()

    async def write(self) -> None:
        """Write the tracks counted in since the last write; on failure they are written next time."""
        changes = self._counter.changes()
        if not changes:
            return
        version = self._version + 1
        written_at = datetime.fromtimestamp(self._clock(), UTC)
        rows = [
            {
                "replica": self._replica,
                "agent": change.agent,
                "tool": change.tool,
                "version": version,
                "written_at": written_at,
                "seconds": orjson.dumps(change.seconds).decode(),
                "minutes": orjson.dumps(change.minutes).decode(),
            }
            for change in changes
        ]
        insert = postgresql.insert if self._database.dialect == "postgresql" else sqlite.insert
        statement = insert(RATE_COUNTS)
        upsert = statement.on_conflict_do_update(
            index_elements=["replica", "agent", "tool"],
            set_={name: statement.excluded[name] for name in ("version", "written_at", "seconds", "minutes")},
        )
        try:
            async with self._database.session() as session, session.begin():
                await session.execute(upsert, rows)
        except BaseException:
            self._counter.unwritten(changes)
            raise
        self._version = version

    async def read(self) -> None:
        """Read the rows other replicas wrote since the last read; each one's track becomes their sum."""
        column = RATE_COUNTS.c
        seen = dict(self._seen)
        newer = [and_(column.replica == replica, column.version > version) for replica, version in seen.items()]
        unseen = not_(column.replica.in_([*seen, self._replica]))
        recent = column.written_at >= datetime.fromtimestamp(self._clock(), UTC) - STALE_AFTER
        query = select(RATE_COUNTS).where(recent, or_(unseen, *newer))
        async with self._database.session() as session:
            rows = (await session.execute(query)).mappings().all()
        changed: dict[str, set[str]] = defaultdict(set)
        for row in rows:
            replica, agent, tool = row["replica"], row["agent"], row["tool"]
            self._seen[replica] = max(self._seen.get(replica, 0), row["version"])
            self._remote[agent][tool][replica] = _buckets(row)
            changed[agent].add(tool)
        for agent, tools in changed.items():
            remote = self._remote[agent]
            for tool in tools:
                self._counter.set_remote(agent, tool, *_summed(remote[tool].values()))
            every_tool = (buckets for tracks in remote.values() for buckets in tracks.values())
            self._counter.set_remote(agent, ALL_TOOLS, *_summed(every_tool))

    async def _delete_stale(self) -> None:
        cutoff = datetime.fromtimestamp(self._clock(), UTC) - STALE_AFTER
        async with self._database.session() as session, session.begin():
            await session.execute(delete(RATE_COUNTS).where(RATE_COUNTS.c.written_at < cutoff))
        now = self._clock()
        for agent, tools in list(self._remote.items()):
            for tool, tracks in list(tools.items()):
                if all(_expired(buckets, now) for buckets in tracks.values()):
                    del tools[tool]
            if not tools:
                del self._remote[agent]

    async def _guarded(self, step: Callable[[], Any], what: str) -> None:
        try:
            await step()
        except (GatewayError, SQLAlchemyError) as exc:
            logger.warning(
                f"rate counts not {what}; calls are counted on this replica alone until the database answers",
                extra={"replica_id": self._replica, "error": str(exc)},
            )


def _buckets(row: Any) -> tuple[Buckets, Buckets]:
    """A row's (second, count) and (minute, count) pairs; an unreadable row counts nothing (logged)."""
    try:
        seconds = [(int(slot), int(count)) for slot, count in orjson.loads(row["seconds"])]
        minutes = [(int(slot), int(count)) for slot, count in orjson.loads(row["minutes"])]
    except (orjson.JSONDecodeError, TypeError, ValueError):
        logger.warning(
            "unreadable rate counts row ignored", extra={"replica_id": row["replica"], "agent": row["agent"]}
        )
        return [], []
    return seconds, minutes


def _summed(tracks: Iterable[tuple[Buckets, Buckets]]) -> tuple[Buckets, Buckets]:
    """Several processes' buckets of one track, as one list of pairs each (the ring adds same slots up)."""
    seconds: Buckets = []
    minutes: Buckets = []
    for track_seconds, track_minutes in tracks:
        seconds.extend(track_seconds)
        minutes.extend(track_minutes)
    return seconds, minutes


def _expired(buckets: tuple[Buckets, Buckets], now: float) -> bool:
    """Whether none of a track's minute buckets is within the last hour."""
    minute = int(now) // 60
    return all(slot <= minute - 60 for slot, _ in buckets[1])
