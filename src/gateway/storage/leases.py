"""Leases: at most one live process does a thing, and another takes over soon after it dies.

A lease is a row keyed by what it guards (an audit replica id, a job's name): who holds it (a
random token per claim, host and pid for people reading it), when it was last renewed, and when
it runs out. The holder renews it on a heartbeat and deletes it when it stops cleanly. Another
process takes it when there is no row (an insert) or when the row has run out (an update that
only matches an expired row), so of two processes racing for it the database lets exactly one
win. A holder that stalled past the expiry cannot renew a lease taken over meanwhile: renewing
matches its own token only.

`Lease` works on any table with the columns of `AuditReplicaLeaseRow` (the key column being the
primary key): `audit.leases` builds the replica id's lease on it, and `named_lease` gives jobs
that one process of many runs (the approvals sweeper) a row in the `leases` table. A table may
have more columns, saying what the holder does (`record_locks`: its agent and workflow): the
claim writes them (`details`) and a process that did not get the lease reads them back.

Times are the processes' own clocks (UTC): hosts sharing a database need clocks that agree to
well within the lease's length, as NTP keeps them.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Column, CursorResult, Table, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from gateway.storage.database import Database
from gateway.storage.tables import LeaseRow

#: The columns every lease table has; any others are the holder's `details`.
LEASE_COLUMNS = frozenset({"token", "host", "pid", "acquired_at", "heartbeat_at", "expires_at"})

#: The `leases` table, typed as the Core table it is (a mapped class's `__table__` is declared only as a FROM clause).
NAMED_LEASES = cast(Table, LeaseRow.__table__)


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """Who holds a lease, as a process that did not get it reads it."""

    key: str
    host: str
    pid: int
    heartbeat_at: datetime
    expires_at: datetime
    token: str
    #: The table's other columns as the holder wrote them (empty for `leases`).
    details: Mapping[str, Any] = field(default_factory=dict)
    acquired_at: datetime | None = None

    @property
    def tenure(self) -> tuple[str, datetime]:
        """Changes whenever the holder renews or another process claims it: the sign of a live holder."""
        return (self.token, self.heartbeat_at)


class Lease:
    """This process's claim on one lease row: take, renew on a heartbeat, release on a clean stop."""

    def __init__(
        self,
        db: Database,
        table: Table,
        key: str,
        *,
        seconds: float,
        predecessor_pid: int | None = None,
        host: str | None = None,
        pid: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """`predecessor_pid` is a process on this host known to be dead whose lease may be taken at once;
        `details` are the values of the table's other columns, written with each claim."""
        if seconds <= 0:
            raise ValueError("a lease must last a positive number of seconds")
        self._db = db
        self._table = table
        self._key_column: Column[Any] = next(iter(table.primary_key.columns))
        self._key = key
        self._length = timedelta(seconds=seconds)
        self._predecessor_pid = predecessor_pid
        self._host = (host or socket.gethostname())[:255]
        self._pid = pid if pid is not None else os.getpid()
        self._token = secrets.token_hex(16)
        self._details = dict(details or {})
        self._held = False
        self._took_over = False
        #: Monotonic time until which the lease is surely ours: counted from before the statement
        #: that took or renewed it, so it ends no later than the expiry the database holds.
        self._valid_until = 0.0

    @property
    def key(self) -> str:
        return self._key

    @property
    def seconds(self) -> float:
        return self._length.total_seconds()

    @property
    def held(self) -> bool:
        """Whether the last take or renewal got it; see `valid` for whether it is still ours now."""
        return self._held

    @property
    def took_over(self) -> bool:
        """Whether the last take found the lease left by a holder that is gone (rather than free)."""
        return self._took_over

    @property
    def valid(self) -> bool:
        """Whether the lease is ours now: taken or renewed, and not run out since, by this process's clock.

        `held` stays true between a late heartbeat's expiry and its renewal, when another process
        may already have taken the lease over; whatever the lease guards checks this instead, so a
        process that stalled never acts on a lease that may be another's.
        """
        return self._held and time.monotonic() < self._valid_until

    async def take(self) -> LeaseHolder | None:
        """One try: insert the lease, or take it over from a holder that is gone; else who holds it.

        None means it is ours now (`held`), or that it was released between the two statements
        and the caller may try again (`held` is false then).
        """
        now = datetime.now(UTC)
        started = time.monotonic()
        values = {
            "token": self._token,
            "host": self._host,
            "pid": self._pid,
            "acquired_at": now,
            "heartbeat_at": now,
            "expires_at": now + self._length,
            **self._details,
        }
        try:
            async with self._db.session() as session, session.begin():
                await session.execute(insert(self._table).values({self._key_column.name: self._key, **values}))
            self._got(started, took_over=False)
            return None
        except IntegrityError:
            pass  # someone holds or held it: take it over if that holder is gone
        columns = self._table.c
        gone = [columns.expires_at <= now]
        if self._predecessor_pid is not None:
            gone.append(and_(columns.host == self._host, columns.pid == self._predecessor_pid))
        async with self._db.session() as session, session.begin():
            taken = cast(
                CursorResult[Any],
                await session.execute(
                    update(self._table).where(self._key_column == self._key, or_(*gone)).values(**values)
                ),
            )
            if taken.rowcount == 1:
                self._got(started, took_over=True)
                return None
            row = (await session.execute(select(self._table).where(self._key_column == self._key))).mappings().first()
        self._held = False
        if row is None:
            return None  # released meanwhile: the caller tries again
        key_name = self._key_column.name
        details = {name: value for name, value in row.items() if name not in LEASE_COLUMNS and name != key_name}
        return LeaseHolder(
            row[key_name],
            row["host"],
            row["pid"],
            row["heartbeat_at"],
            row["expires_at"],
            row["token"],
            details,
            row["acquired_at"],
        )

    async def keep(self) -> bool:
        """Renew the lease when it is ours, else try to take it: the heartbeat of a process that wants it.

        True when it is ours now. For a job any one process may run: whoever keeps it runs the job.
        """
        if self._held and await self.renew():
            return True
        await self.take()
        return self._held

    async def renew(self) -> bool:
        """Push the expiry on; False when the lease is no longer ours (it expired and was taken over)."""
        now = datetime.now(UTC)
        started = time.monotonic()
        async with self._db.session() as session, session.begin():
            renewed = cast(
                CursorResult[Any],
                await session.execute(
                    update(self._table)
                    .where(self._key_column == self._key, self._table.c.token == self._token)
                    .values(heartbeat_at=now, expires_at=now + self._length)
                ),
            )
        self._held = renewed.rowcount == 1
        if self._held:
            self._valid_until = started + self._length.total_seconds()
        return self._held

    async def release(self) -> None:
        """Give the lease up, so another process may take it at once; a lease no longer ours is left alone."""
        if not self._held:
            return
        self._held = False
        async with self._db.session() as session, session.begin():
            await session.execute(
                delete(self._table).where(self._key_column == self._key, self._table.c.token == self._token)
            )

    def _got(self, started: float, *, took_over: bool) -> None:
        self._held, self._took_over = True, took_over
        self._valid_until = started + self._length.total_seconds()


def named_lease(db: Database, name: str, *, seconds: float, host: str | None = None, pid: int | None = None) -> Lease:
    """The lease on the job `name` (a row of the `leases` table), for a job one process of many runs."""
    return Lease(db, NAMED_LEASES, name, seconds=seconds, host=host, pid=pid)
