"""Replica leases on real SQLite and PostgreSQL: one live writer per chain, dead writers' chains closed."""

from __future__ import annotations

import os
import re
import socket

import anyio
import pytest
from sqlalchemy import select

from audit_calls import audit_call
from gateway.audit import AuditRecorder, Redactor, default_replica_id, get_call, verify
from gateway.audit.leases import ReplicaLease, close_dead_chains, expired_replicas
from gateway.errors import AuditUnavailable, ReplicaIdInUse
from gateway.identity.principal import Principal
from gateway.storage import Database
from gateway.storage.tables import AuditReplicaLeaseRow
from harness import eventually

pytestmark = pytest.mark.anyio

AGENT = Principal(agent="billing-bot", roles=("finance",))


async def _leases(database: Database) -> dict[str, tuple[str, int]]:
    table = AuditReplicaLeaseRow.__table__
    async with database.session() as session:
        rows = (await session.execute(select(table.c.replica_id, table.c.host, table.c.pid))).all()
    return {row.replica_id: (row.host, row.pid) for row in rows}


def test_default_replica_ids_differ_per_process_and_are_valid() -> None:
    ids = {default_replica_id() for _ in range(50)}
    assert len(ids) == 50
    for replica_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}", replica_id)
        assert f"-p{os.getpid()}-" in replica_id


async def test_a_live_lease_refuses_a_second_holder_naming_the_first(database: Database) -> None:
    first = ReplicaLease(database, "gw-1", seconds=30, host="host-a", pid=4242)
    assert await first.acquire() is False
    second = ReplicaLease(database, "gw-1", seconds=30, host="host-b", pid=99)
    with pytest.raises(ReplicaIdInUse) as refused:
        await second.acquire(wait_for_holder=False)
    message = str(refused.value)
    assert message.startswith(
        "the audit replica id 'gw-1' is in use by another live gateway process (host host-a, pid 4242): "
        "it renewed its lease at 20"
    )
    assert "give this one its own [audit] replica_id" in message
    assert await _leases(database) == {"gw-1": ("host-a", 4242)}

    await first.release()
    assert await _leases(database) == {}
    assert await second.acquire() is False  # a released id is free at once
    assert await _leases(database) == {"gw-1": ("host-b", 99)}


async def test_a_start_watches_an_unexpired_lease_and_is_refused_when_its_holder_renews(database: Database) -> None:
    holder = ReplicaLease(database, "gw-1", seconds=5, host="host-a", pid=4242)
    await holder.acquire()
    watching = ReplicaLease(database, "gw-1", seconds=5, host="host-b", pid=99)
    refused: list[ReplicaIdInUse] = []

    async def start() -> None:
        with pytest.raises(ReplicaIdInUse) as caught:
            await watching.acquire()
        refused.append(caught.value)

    async with anyio.create_task_group() as group:
        group.start_soon(start)
        with anyio.fail_after(30):
            while not refused:  # the holder's heartbeat, until the watcher has seen one
                assert await holder.renew()
                await anyio.sleep(0.2)
    assert "(host host-a, pid 4242)" in str(refused[0])
    assert await _leases(database) == {"gw-1": ("host-a", 4242)}


async def test_a_start_waits_out_the_lease_of_a_holder_that_died_and_takes_it_over(database: Database) -> None:
    await ReplicaLease(database, "gw-1", seconds=1, host="host-a", pid=4242).acquire()  # never renewed
    restarted = ReplicaLease(database, "gw-1", seconds=30, host="host-a", pid=5555)
    with anyio.fail_after(30):
        assert await restarted.acquire() is True
    assert await _leases(database) == {"gw-1": ("host-a", 5555)}


async def test_an_expired_lease_is_taken_over_and_its_old_holder_cannot_renew_it(database: Database) -> None:
    stalled = ReplicaLease(database, "gw-1", seconds=0.2, host="host-a", pid=1)
    await stalled.acquire()
    await _wait_expired(database, "gw-1")
    successor = ReplicaLease(database, "gw-1", seconds=30, host="host-b", pid=2)
    assert await successor.acquire() is True
    assert await stalled.renew() is False and not stalled.held
    await stalled.release()  # no longer its lease: left alone
    assert await _leases(database) == {"gw-1": ("host-b", 2)}
    assert await successor.renew() is True


async def test_a_late_holder_claims_its_id_again_once_a_live_process_released_it(database: Database) -> None:
    late = ReplicaLease(database, "gw-1", seconds=0.2)
    await late.acquire()
    await _wait_expired(database, "gw-1")

    async def recover(replica_id: str) -> int:
        return 0

    assert await close_dead_chains(database, own_replica_id="gw-other", seconds=30, recover=recover) == {"gw-1": 0}
    assert await _leases(database) == {}
    assert await late.renew() is False
    assert await late.acquire() is False and late.held
    assert await late.renew() is True


async def test_a_restarted_worker_takes_its_dead_predecessors_lease_at_once(database: Database) -> None:
    host = socket.gethostname()
    await ReplicaLease(database, "gw-w0", seconds=30, host=host, pid=1111).acquire()
    with pytest.raises(ReplicaIdInUse):
        other = ReplicaLease(database, "gw-w0", seconds=30, host=host, pid=2222, predecessor_pid=3333)
        await other.acquire(wait_for_holder=False)
    restarted = ReplicaLease(database, "gw-w0", seconds=30, host=host, pid=2222, predecessor_pid=1111)
    with anyio.fail_after(5):  # at once, not after watching the dead worker's lease for 30 s
        assert await restarted.acquire() is True
    assert await _leases(database) == {"gw-w0": (host, 2222)}


async def _open_call_left_behind(database: Database, replica_id: str, lease_seconds: float) -> tuple[str, str]:
    """A chain as a SIGKILL leaves it: one call finished, one without an outcome, the lease not released."""
    await ReplicaLease(database, replica_id, seconds=lease_seconds, host="host-a", pid=1).acquire()
    recorder = AuditRecorder(database, Redactor(), replica_id=replica_id)
    await recorder.start()
    open_call = await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
    finished = await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
    await recorder.record_outcome(finished, outcome="ok")
    await recorder.close()  # with a call open, so the next start on this chain must recover it
    return open_call.call_id, finished.call_id


async def test_a_live_process_closes_the_chain_of_one_that_died_with_calls_open(database: Database) -> None:
    dead_open, dead_finished = await _open_call_left_behind(database, "gw-dead", lease_seconds=0.2)
    alive_open, _ = await _open_call_left_behind(database, "gw-alive", lease_seconds=300)
    live_lease = ReplicaLease(database, "gw-live", seconds=30)
    await live_lease.acquire()
    recovered: list[str] = []

    async def recover(replica_id: str) -> int:
        recovered.append(replica_id)
        recorder = AuditRecorder(database, Redactor(), replica_id=replica_id)
        try:
            report = await recorder.start()
        finally:
            await recorder.close()
        return report.recovered_calls

    await _wait_expired(database, "gw-dead")
    assert await close_dead_chains(database, own_replica_id="gw-live", seconds=30, recover=recover) == {"gw-dead": 1}
    assert recovered == ["gw-dead"]
    assert (await get_call(database, dead_open)).outcome_name == "unknown"
    assert (await get_call(database, dead_finished)).outcome_name == "ok"
    assert (await get_call(database, alive_open)).outcome_name is None  # its writer's lease still runs
    assert await _leases(database) == {"gw-alive": ("host-a", 1), "gw-live": (socket.gethostname(), os.getpid())}
    # Closed once: a later look finds nothing to do, and the log verifies.
    assert await close_dead_chains(database, own_replica_id="gw-live", seconds=30, recover=recover) == {}
    assert recovered == ["gw-dead"]
    assert (await verify(database)).ok


async def test_a_process_never_closes_its_own_chain_when_its_heartbeat_fell_behind(database: Database) -> None:
    own = ReplicaLease(database, "gw-self", seconds=0.2)
    await own.acquire()
    await _wait_expired(database, "gw-self")

    async def recover(replica_id: str) -> int:
        raise AssertionError(f"recovered {replica_id}, the process's own live chain")

    assert await close_dead_chains(database, own_replica_id="gw-self", seconds=30, recover=recover) == {}


async def _wait_expired(database: Database, replica_id: str) -> None:
    """Poll until the lease has run out (it is short); the test waits on that, not on a guessed delay."""
    with anyio.fail_after(30):
        while True:
            if replica_id in await expired_replicas(database):
                return
            await anyio.sleep(0.02)


async def test_a_process_whose_lease_ran_out_writes_nothing_until_it_holds_the_id_again(database: Database) -> None:
    lease = ReplicaLease(database, "gw-1", seconds=1, host="host-a", pid=4242)
    await lease.acquire()
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    recorder.write_only_while(lambda: lease.valid)
    async with recorder:
        handle = await recorder.record_call(audit_call(AGENT, "finance__pay"), decision="allow")
        # No heartbeat: the lease runs out by this process's own clock.
        await eventually(lambda: not lease.valid, timeout=10, what="the lease to run out")
        # A stalled process must not write into a chain another process may be closing.
        with pytest.raises(AuditUnavailable, match="lease on its audit replica id 'gw-1' ran out"):
            await recorder.record_call(audit_call(AGENT, "finance__refund"), decision="allow")
        await recorder.record_outcome(handle, outcome="ok", wait=True)  # kept, not written
        assert (await get_call(database, handle.call_id)).outcome is None

        assert await lease.renew()  # nobody took the id meanwhile: claimed again
        # The kept outcome goes first into the next batch, committed before this call returns.
        await recorder.record_call(audit_call(AGENT, "finance__refund"), decision="allow")
        written = await get_call(database, handle.call_id)
        assert written is not None and written.outcome is not None and written.outcome["outcome"] == "ok"
    report = await verify(database)
    assert report.ok, report


async def test_a_process_whose_id_was_taken_over_never_writes_to_that_chain_again(database: Database) -> None:
    lease = ReplicaLease(database, "gw-1", seconds=1, host="host-a", pid=4242)
    await lease.acquire()
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    recorder.write_only_while(lambda: lease.valid)
    async with recorder:
        await eventually(lambda: not lease.valid, timeout=10, what="the lease to run out")
        successor = ReplicaLease(database, "gw-1", seconds=30, host="host-b", pid=99)
        with anyio.fail_after(10):
            while not successor.held:
                try:
                    await successor.acquire(wait_for_holder=False)
                except ReplicaIdInUse:
                    await anyio.sleep(0.05)  # the database's expiry, a moment after this clock's
        assert not await lease.renew()
        with pytest.raises(AuditUnavailable, match="ran out"):
            await recorder.record_call(audit_call(AGENT, "finance__pay"), decision="allow")
