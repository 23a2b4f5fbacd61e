"""Replica leases: one live writer per audit chain, and the chains of dead writers closed by the living.

Each process writes its own hash chain, named by its replica id. Two processes on one id would
collide on the chain's sequence numbers, and each one's start-up recovery would mark the other's
running calls `unknown`. So a process holds a lease on its id (a row in `audit_replica_leases`:
who, where, until when), renews it with a heartbeat, and gives it up when it closes cleanly. A
start on an id whose lease has not expired watches it: a renewal shows the holder alive, and the
start is refused naming it; an expiry shows it dead, and the lease is taken over.

Ids are unique per process by default, so a process that dies never comes back under its id to
close the calls it left open. Instead its lease stops being renewed and expires, and any live
process, on its heartbeat, takes the expired lease over, runs the chain's own recovery (outcome
`unknown` for each call without an outcome, then a clean closing checkpoint) and releases it.
A restarted process with a configured id does the same for its own chain once the lease has
expired (at most `lease_seconds` after the crash), or at once when it replaces a worker its
supervisor saw die (`predecessor_pid`).

Times are the processes' own clocks (UTC): hosts sharing a database need clocks that agree to
well within the lease's length, as NTP keeps them.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import anyio
from sqlalchemy import CursorResult, Table, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from gateway.errors import ReplicaIdInUse
from gateway.storage.database import Database
from gateway.storage.tables import AuditReplicaLeaseRow

logger = logging.getLogger("gateway.audit")

#: Typed as the Core table it is (a mapped class's `__table__` is declared only as a FROM clause).
_LEASES = cast(Table, AuditReplicaLeaseRow.__table__)
#: A take-over and an insert can race with another process doing the same; a few rounds settle it.
_ATTEMPTS = 3
#: Longest pause between two looks at a lease whose holder may be alive or dead.
_WATCH_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """Who holds a replica id's lease, as a refused process reports it."""

    replica_id: str
    host: str
    pid: int
    heartbeat_at: datetime
    expires_at: datetime
    token: str

    @property
    def tenure(self) -> tuple[str, datetime]:
        """Changes whenever the holder renews or another process claims the id: the sign of a live holder."""
        return (self.token, self.heartbeat_at)


class ReplicaLease:
    """This process's claim on one replica id: acquire, renew on a heartbeat, release on close."""

    def __init__(
        self,
        db: Database,
        replica_id: str,
        *,
        seconds: float,
        predecessor_pid: int | None = None,
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        """`predecessor_pid` is a process on this host known to be dead whose lease may be taken at once."""
        if seconds <= 0:
            raise ValueError("a lease must last a positive number of seconds")
        self._db = db
        self._replica_id = replica_id
        self._length = timedelta(seconds=seconds)
        self._predecessor_pid = predecessor_pid
        self._host = (host or socket.gethostname())[:255]
        self._pid = pid if pid is not None else os.getpid()
        self._token = secrets.token_hex(16)
        self._held = False
        self._took_over = False
        #: Monotonic time until which the lease is surely ours: counted from before the statement
        #: that took or renewed it, so it ends no later than the expiry the database holds.
        self._valid_until = 0.0

    @property
    def replica_id(self) -> str:
        return self._replica_id

    @property
    def held(self) -> bool:
        return self._held

    @property
    def valid(self) -> bool:
        """Whether the lease is ours now: taken or renewed, and not run out since, by this process's clock.

        `held` stays true between a late heartbeat's expiry and its renewal, when another process
        may already have taken the id over; a writer checks this instead, so that a process that
        stalled never writes into a chain another process is closing.
        """
        return self._held and time.monotonic() < self._valid_until

    async def acquire(self, *, wait_for_holder: bool = True) -> bool:
        """Take the lease; True when it was taken over from a writer that is gone.

        A lease that has not expired may belong to a live process or to one that died moments
        ago (a crash and an immediate restart under a configured id). With `wait_for_holder`,
        the lease is watched until it tells which: renewed means alive, and `ReplicaIdInUse` is
        raised naming the holder; expired means dead, and it is taken over. That takes at most
        the lease's length. Without it, an unexpired lease is refused at once.
        """
        watched: LeaseHolder | None = None
        for _ in range(_ATTEMPTS):
            holder = await self._take()
            while holder is not None:
                if watched is not None and holder.tenure != watched.tenure:
                    raise ReplicaIdInUse(_in_use_message(holder))  # renewed, or claimed anew: someone is alive
                if not wait_for_holder:
                    raise ReplicaIdInUse(_in_use_message(holder))
                watched = holder
                await anyio.sleep(min(_WATCH_INTERVAL, self._length.total_seconds() / 10))
                holder = await self._take()
            if self._held:
                return self._took_over
        raise ReplicaIdInUse(
            f"the audit replica id {self._replica_id!r} could not be claimed: other processes keep taking and "
            "releasing it at the same moments; give each process its own [audit] replica_id"
        )

    async def _take(self) -> LeaseHolder | None:
        """One try: insert the lease, or take it over from a writer that is gone; else who holds it."""
        now = datetime.now(UTC)
        started = time.monotonic()
        values = {
            "token": self._token,
            "host": self._host,
            "pid": self._pid,
            "acquired_at": now,
            "heartbeat_at": now,
            "expires_at": now + self._length,
        }
        try:
            async with self._db.session() as session, session.begin():
                await session.execute(insert(_LEASES).values(replica_id=self._replica_id, **values))
            self._held, self._took_over = True, False
            self._valid_until = started + self._length.total_seconds()
            return None
        except IntegrityError:
            pass  # someone holds or held it: take it over if that writer is gone
        gone = [_LEASES.c.expires_at <= now]
        if self._predecessor_pid is not None:
            gone.append(and_(_LEASES.c.host == self._host, _LEASES.c.pid == self._predecessor_pid))
        async with self._db.session() as session, session.begin():
            taken = cast(
                CursorResult[Any],
                await session.execute(
                    update(_LEASES).where(_LEASES.c.replica_id == self._replica_id, or_(*gone)).values(**values)
                ),
            )
            if taken.rowcount == 1:
                self._held, self._took_over = True, True
                self._valid_until = started + self._length.total_seconds()
                return None
            row = (await session.execute(select(_LEASES).where(_LEASES.c.replica_id == self._replica_id))).first()
        if row is None:
            return None  # released meanwhile: the caller tries again
        return LeaseHolder(row.replica_id, row.host, row.pid, row.heartbeat_at, row.expires_at, row.token)

    async def renew(self) -> bool:
        """Push the expiry on; False when the lease is no longer ours (it expired and was taken over)."""
        now = datetime.now(UTC)
        started = time.monotonic()
        async with self._db.session() as session, session.begin():
            renewed = cast(
                CursorResult[Any],
                await session.execute(
                    update(_LEASES)
                    .where(_LEASES.c.replica_id == self._replica_id, _LEASES.c.token == self._token)
                    .values(heartbeat_at=now, expires_at=now + self._length)
                ),
            )
        self._held = renewed.rowcount == 1
        if self._held:
            self._valid_until = started + self._length.total_seconds()
        return self._held

    async def release(self) -> None:
        """Give the lease up (after the chain was closed cleanly); a lease no longer ours is left alone."""
        if not self._held:
            return
        self._held = False
        async with self._db.session() as session, session.begin():
            await session.execute(
                delete(_LEASES).where(_LEASES.c.replica_id == self._replica_id, _LEASES.c.token == self._token)
            )


async def expired_replicas(db: Database) -> list[str]:
    """Replica ids whose writer stopped renewing its lease: their chains may hold calls left open."""
    async with db.session() as session:
        rows = await session.execute(
            select(_LEASES.c.replica_id).where(_LEASES.c.expires_at <= datetime.now(UTC)).order_by(_LEASES.c.replica_id)
        )
        return list(rows.scalars())


async def close_dead_chains(
    db: Database, *, own_replica_id: str, seconds: float, recover: Callable[[str], Awaitable[int]]
) -> dict[str, int]:
    """Take over every expired lease but our own, run `recover(replica_id)` on its chain, release it.

    `recover` starts and closes a recorder on the chain, which records the outcome `unknown` for
    each call left open and returns how many. A lease another process takes first is skipped:
    one recovery per chain. Returns the calls closed per chain.
    """
    closed: dict[str, int] = {}
    for replica_id in await expired_replicas(db):
        if replica_id == own_replica_id:
            continue  # our own heartbeat fell behind; the chain is ours and still being written
        lease = ReplicaLease(db, replica_id, seconds=seconds)
        try:
            await lease.acquire(wait_for_holder=False)
        except ReplicaIdInUse:
            continue  # taken over by another process (or its writer came back) meanwhile
        # A recovery that fails keeps the lease until it expires again, so a later look retries it.
        closed[replica_id] = await recover(replica_id)
        await lease.release()
        logger.warning(
            "audit: closed the chain of a process that stopped without closing it",
            extra={"replica_id": replica_id, "calls_marked_unknown": closed[replica_id]},
        )
    return closed


def _in_use_message(holder: LeaseHolder) -> str:
    return (
        f"the audit replica id {holder.replica_id!r} is in use by another live gateway process (host {holder.host}, "
        f"pid {holder.pid}): it renewed its lease at {holder.heartbeat_at.isoformat(timespec='seconds')}, and the "
        f"lease runs until {holder.expires_at.isoformat(timespec='seconds')} unless renewed again. Two processes on "
        "one id would corrupt each other's audit chain: give this one its own [audit] replica_id, or leave "
        "replica_id unset for an id unique to each process, or stop the other process first."
    )
