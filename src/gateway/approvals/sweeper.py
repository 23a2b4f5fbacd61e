"""The approvals sweeper: expiries and escalations, done by one gateway process at a time.

Approvals nobody decided in time must expire, and those due to escalate must be escalated, even
when no request looks at them; each of these changes tells people (a webhook, an audit event).
Every change is a compare-and-set, so two processes sweeping at once would never both make one,
but every process of every replica would still read the whole table on every tick, and race each
other for each change. So only the process holding the `approvals-sweeper` lease sweeps: each
process tries on every tick to keep (renew) or take it, and the one that has it sweeps. When that
process stops cleanly it releases the lease and the next process to look takes it; when it dies,
its lease runs out (`[approvals] sweep_lease_seconds`) and another takes it over then.

A process whose lease ran out by its own clock sweeps no more until it holds it again, so a
stalled holder does not sweep beside its successor. Sweeping is upkeep, never what keeps a call
correct: a waiting request expires its own approval when its time comes, and a late vote or a
late repeat finds the approval expired by the store itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anyio
from sqlalchemy.exc import SQLAlchemyError

from gateway.approvals.model import Approval
from gateway.approvals.store import ApprovalStore
from gateway.errors import ApprovalConflict, GatewayError
from gateway.storage.leases import Lease

logger = logging.getLogger(__name__)

#: The name of the lease whose holder sweeps (a row of the `leases` table).
SWEEPER_LEASE = "approvals-sweeper"


@dataclass(frozen=True, slots=True)
class Sweep:
    """What one sweep changed: approvals it expired, and approvals it escalated."""

    expired: tuple[Approval, ...]
    escalated: tuple[Approval, ...]


class ApprovalSweeper:
    """Sweeps every `interval` seconds while this process holds `lease`, and renews it meanwhile."""

    def __init__(self, store: ApprovalStore, lease: Lease, *, interval: float) -> None:
        if interval <= 0:
            raise ValueError("the sweep interval must be positive")
        self._store = store
        self._lease = lease
        self._interval = interval
        self._sweeping = False

    @property
    def lease(self) -> Lease:
        return self._lease

    async def sweep_once(self) -> Sweep | None:
        """Keep or take the lease and, while it is this process's, sweep; None when another process holds it."""
        if not await self._lease.keep() or not self._lease.valid:
            self._holding(False)
            return None
        self._holding(True)
        expired = tuple(await self._store.expire_due())
        for approval in expired:
            logger.info("approval expired", extra={"approval_id": approval.id, "tool": approval.tool})
        escalated: list[Approval] = []
        for approval in await self._store.due_for_escalation():
            if not self._lease.valid:
                break  # this process stalled: the next holder escalates the rest
            try:
                marked = await self._store.mark_escalated(approval.id)
            except ApprovalConflict:
                continue  # decided, expired or escalated by another writer meanwhile
            escalated.append(marked)
            logger.warning(
                "approval escalated",
                extra={"approval_id": marked.id, "tool": marked.tool, "to": list(marked.escalate_to)},
            )
        return Sweep(expired, tuple(escalated))

    async def run(self) -> None:
        """Sweep every `interval` while holding the lease, renewing it often enough to keep it; until cancelled.

        The heartbeat comes at least three times per lease length, so one late tick does not lose it.
        """
        heartbeat = min(self._interval, self._lease.seconds / 3)
        next_sweep = anyio.current_time()
        while True:
            try:
                if anyio.current_time() >= next_sweep:
                    next_sweep = anyio.current_time() + self._interval
                    await self.sweep_once()
                else:
                    self._holding(await self._lease.keep())
            except (GatewayError, SQLAlchemyError) as exc:
                logger.warning("approvals sweep failed; will retry", extra={"error": str(exc)})
            await anyio.sleep(heartbeat)

    async def close(self) -> None:
        """Release the lease, so another process sweeps from its next look rather than after the lease runs out."""
        try:
            await self._lease.release()
        except (GatewayError, SQLAlchemyError) as exc:  # it runs out by itself
            logger.warning("approvals sweeper: lease not released", extra={"error": str(exc)})

    def _holding(self, now: bool) -> None:
        """Log when this process starts or stops being the one that sweeps."""
        if now != self._sweeping:
            self._sweeping = now
            logger.info(
                "approvals sweeper: this process sweeps now" if now else "approvals sweeper: another process sweeps",
                extra={"lease": self._lease.key},
            )
