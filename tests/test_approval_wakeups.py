"""Waking the requests that wait on an approval: by this process's own changes at once, and by
another process's over PostgreSQL signals, without any look at the database in between."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import anyio
import pytest

from gateway.approvals import ApprovalState, ApprovalStore, Requirement, Sealer
from gateway.approvals.wakeups import CHANNEL, ApprovalWakeups, Waiter
from gateway.calls import Call, Origin, Target
from gateway.identity.principal import Principal
from gateway.signals import Signals, open_signals
from gateway.storage import Database

pytestmark = pytest.mark.anyio

AGENT = Principal(agent="billing-bot", roles=("finance",))
KEY = base64.b64encode(os.urandom(32)).decode()
#: Generous for a signal that takes milliseconds: nothing but a ring ends a wait early.
DEADLINE = 10.0


@dataclass
class Process:
    """What one gateway process has of the approvals: its store, its signals, its waiters."""

    store: ApprovalStore
    signals: Signals
    wakeups: ApprovalWakeups


@asynccontextmanager
async def process(url: str) -> AsyncIterator[Process]:
    database = Database(url)
    await database.migrate()
    store = ApprovalStore(database, Sealer([("k1", KEY)]))
    signals = open_signals(url)
    wakeups = ApprovalWakeups(store, signals)
    try:
        async with anyio.create_task_group() as tasks:
            await tasks.start(signals.run)
            await tasks.start(wakeups.run)
            yield Process(store, signals, wakeups)
            tasks.cancel_scope.cancel()
    finally:
        await database.close()


async def _hold(store: ApprovalStore, n: int = 1) -> str:
    call = Call("tools/call", Origin(AGENT), "bank.transfer", {"n": n}, target=Target("bank", "transfer"))
    requirement = Requirement(approvers=("user:carol",), expires_in=timedelta(minutes=30))
    approval = await store.create(
        call, requirement, policy_ids=("p",), reasons=("r",), redacted_arguments={"n": n}, policy_version=None
    )
    return approval.id


async def _rings(waiter: Waiter, seconds: float = DEADLINE) -> bool:
    return await waiter.wait(seconds)


async def test_a_ring_that_came_before_the_wait_is_not_missed() -> None:
    waiter = Waiter()
    waiter.ring()
    assert await waiter.wait(0) is True  # rung between a look and the wait: the next wait returns at once
    assert await waiter.wait(0.01) is False  # and counts once


@pytest.mark.postgres
async def test_a_change_committed_in_one_process_wakes_the_waiters_of_another(postgres_url: str) -> None:
    async with process(postgres_url) as here, process(postgres_url) as there:
        # Held where the call waits (its own changes ring there at once and are never echoed back).
        approval_id = await _hold(there.store)
        other_id = await _hold(there.store, 2)
        with there.wakeups.waiting(approval_id) as waiting, there.wakeups.waiting(other_id) as elsewhere:
            async with here.signals.subscribe(CHANNEL) as sent:
                await here.store.vote(approval_id, user="carol", roles=(), approve=True)
                with anyio.fail_after(DEADLINE):
                    signal = await sent.get()
                    while not signal.local:  # the other process's own signals of the holds it made
                        signal = await sent.get()
            assert signal.payload == {"id": approval_id, "state": "approved"}
            assert await _rings(waiting)  # by the signal alone: nothing here looked at the database
            assert (await there.store.get(approval_id)).state is ApprovalState.APPROVED
            assert await elsewhere.wait(0) is False  # a change of another approval rings nobody else


async def test_a_change_committed_here_rings_at_once_without_signals(tmp_path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    await database.migrate()
    try:
        store = ApprovalStore(database, Sealer([("k1", KEY)]))
        wakeups = ApprovalWakeups(store)  # no signals: this process's own changes only
        approval_id, other_id = await _hold(store), await _hold(store, 2)
        with wakeups.waiting(approval_id) as waiter, wakeups.waiting(other_id) as elsewhere:
            await store.cancel(approval_id, actor="carol")
            assert await waiter.wait(0) is True
            assert await elsewhere.wait(0) is False
        assert wakeups.pending == 0  # nothing queued for other processes it cannot reach
    finally:
        await database.close()
