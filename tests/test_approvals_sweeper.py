"""The approvals sweeper on real SQLite and PostgreSQL: of several gateway processes only one sweeps,
and another takes the sweeps over when that one stops renewing its lease or stops cleanly."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from gateway.approvals import ApprovalState, ApprovalStore, Requirement, Sealer
from gateway.approvals.sweeper import SWEEPER_LEASE, ApprovalSweeper, Sweep
from gateway.calls import Call, Origin, Target
from gateway.identity.principal import Principal
from gateway.storage import Database
from gateway.storage.leases import named_lease

pytestmark = pytest.mark.anyio

AGENT = Principal(agent="billing-bot", roles=("finance",))
KEY = base64.b64encode(os.urandom(32)).decode()
START = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
#: Long enough that a live holder never loses it during a test on a slow machine.
LEASE_SECONDS = 3.0


class Clock:
    """The approvals' clock, moved on by hand so approvals fall due without waiting for them."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


async def _hold(store: ApprovalStore, n: int) -> str:
    """A pending approval that expires 5 minutes after START and escalates after 1."""
    call = Call("tools/call", Origin(AGENT), "bank.transfer", {"n": n}, target=Target("bank", "transfer"))
    requirement = Requirement(
        approvers=("user:carol",),
        expires_in=timedelta(minutes=5),
        escalate_after=timedelta(minutes=1),
        escalate_to=("role:cfo",),
    )
    approval = await store.create(
        call, requirement, policy_ids=("p",), reasons=("r",), redacted_arguments={"n": n}, policy_version=None
    )
    return approval.id


@pytest.fixture
async def replicas(database_url: str) -> AsyncIterator[list[Database]]:
    """Two processes' connections to one database, as two gateway replicas have."""
    databases = [Database(database_url), Database(database_url)]
    await databases[0].migrate()
    try:
        yield databases
    finally:
        for database in databases:
            await database.close()


def _sweeper(database: Database, clock: Clock, host: str) -> ApprovalSweeper:
    store = ApprovalStore(database, Sealer([("k1", KEY)]), clock=clock)
    lease = named_lease(database, SWEEPER_LEASE, seconds=LEASE_SECONDS, host=host, pid=1)
    return ApprovalSweeper(store, lease, interval=0.05)


async def _until_it_sweeps(sweeper: ApprovalSweeper) -> Sweep:
    """Try as a replica's tick does until this sweeper holds the lease (the other's must run out first)."""
    with anyio.fail_after(LEASE_SECONDS * 5):
        while True:
            swept = await sweeper.sweep_once()
            if swept is not None:
                return swept
            await anyio.sleep(0.05)


async def test_only_the_lease_holder_sweeps_and_another_takes_over_when_it_stops_renewing(
    replicas: list[Database],
) -> None:
    clock = Clock()
    first, second = (_sweeper(database, clock, host) for database, host in zip(replicas, ("host-a", "host-b")))
    store = ApprovalStore(replicas[0], Sealer([("k1", KEY)]), clock=clock)
    early = await _hold(store, 1)
    clock.now = START + timedelta(minutes=2)  # due to escalate, not yet to expire

    swept = await first.sweep_once()
    assert swept is not None and [a.id for a in swept.escalated] == [early] and swept.expired == ()
    assert await second.sweep_once() is None  # the holder is alive: the other process leaves it alone
    assert (await store.get(early)).escalated_at is not None

    late = await _hold(store, 2)  # made at minute 2: it expires at minute 7
    clock.now = START + timedelta(minutes=8)  # both due to expire; the first process sweeps no more
    taken = await _until_it_sweeps(second)
    assert sorted(a.id for a in taken.expired) == sorted([early, late]) and taken.escalated == ()
    assert [(await store.get(i)).state for i in (early, late)] == [ApprovalState.EXPIRED] * 2
    assert await first.sweep_once() is None  # its lease was taken over: it cannot renew it, nor take it back
    assert not first.lease.held and second.lease.held


async def test_a_holder_that_stops_cleanly_hands_the_sweeps_over_at_once(replicas: list[Database]) -> None:
    clock = Clock()
    first, second = (_sweeper(database, clock, host) for database, host in zip(replicas, ("host-a", "host-b")))
    assert await first.sweep_once() == Sweep((), ())
    assert await second.sweep_once() is None
    await first.close()
    assert await second.sweep_once() == Sweep((), ())  # no waiting for the lease to run out
