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

The lease itself (take, renew, release, take over once expired) is `gateway.storage.leases`'s;
this module adds what is particular to replica ids: a start that watches a live-looking lease
before refusing it, and the closing of dead writers' chains.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import cast

import anyio
from sqlalchemy import Table, select

from gateway.errors import ReplicaIdInUse
from gateway.storage.database import Database
from gateway.storage.leases import Lease, LeaseHolder
from gateway.storage.tables import AuditReplicaLeaseRow

logger = logging.getLogger("gateway.audit")

#: Typed as the Core table it is (a mapped class's `__table__` is declared only as a FROM clause).
_LEASES = cast(Table, AuditReplicaLeaseRow.__table__)
#: A take-over and an insert can race with another process doing the same; a few rounds settle it.
_ATTEMPTS = 3
#: Longest pause between two looks at a lease whose holder may be alive or dead.
_WATCH_INTERVAL = 1.0


class ReplicaLease(Lease):
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
        super().__init__(db, _LEASES, replica_id, seconds=seconds, predecessor_pid=predecessor_pid, host=host, pid=pid)

    @property
    def replica_id(self) -> str:
        return self.key

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
            holder = await self.take()
            while holder is not None:
                if watched is not None and holder.tenure != watched.tenure:
                    raise ReplicaIdInUse(_in_use_message(holder))  # renewed, or claimed anew: someone is alive
                if not wait_for_holder:
                    raise ReplicaIdInUse(_in_use_message(holder))
                watched = holder
                await anyio.sleep(min(_WATCH_INTERVAL, self.seconds / 10))
                holder = await self.take()
            if self.held:
                return self.took_over
        raise ReplicaIdInUse(
            f"the audit replica id {self.replica_id!r} could not be claimed: other processes keep taking and "
            "releasing it at the same moments; give each process its own [audit] replica_id"
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
        f"the audit replica id {holder.key!r} is in use by another live gateway process (host {holder.host}, "
        f"pid {holder.pid}): it renewed its lease at {holder.heartbeat_at.isoformat(timespec='seconds')}, and the "
        f"lease runs until {holder.expires_at.isoformat(timespec='seconds')} unless renewed again. Two processes on "
        "one id would corrupt each other's audit chain: give this one its own [audit] replica_id, or leave "
        "replica_id unset for an id unique to each process, or stop the other process first."
    )
