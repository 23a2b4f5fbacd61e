"""The recorder's write path on each store: what it writes reads back like before, and failures refuse calls."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anyio
import pytest
from sqlalchemy import insert, text

from audit_calls import audit_call
from gateway.audit import AuditRecorder, Redactor, Timings, get_call, search, verify
from gateway.audit.postgres_writer import PostgresEventStore
from gateway.audit.recorder import _OUTCOME_DELAY_SECONDS
from gateway.audit.sqlalchemy_writer import SqlAlchemyEventStore
from gateway.audit.sqlite_writer import SqliteEventStore
from gateway.audit.store_selection import open_event_store
from gateway.errors import AuditUnavailable
from gateway.identity.principal import Principal
from gateway.storage import Database
from gateway.storage.tables import AuditEventRow

pytestmark = pytest.mark.anyio

AGENT = Principal(agent="billing-bot", roles=("finance",), user="alice@example.com")


async def test_event_times_read_back_and_filter_like_those_written_through_the_engine(database):
    moment = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    await recorder.start()
    try:
        handle = await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow", time=moment)
    finally:
        await recorder.close()
    # A row for another replica with the same time, written the way the engine writes it.
    async with database.engine.begin() as connection:
        await connection.execute(
            insert(AuditEventRow.__table__),
            [
                {
                    "replica_id": "probe",
                    "seq": 1,
                    "kind": "probe",
                    "time": moment,
                    "prev_hash": "",
                    "hash": "",
                    "content": "",
                }
            ],
        )
        times = (
            await connection.execute(
                text("SELECT replica_id, time FROM audit_events WHERE seq = 1 ORDER BY replica_id")
            )
        ).all()
    assert times[0].time == times[1].time  # byte for byte on SQLite, the same instant on PostgreSQL

    inside = await search(database, since=moment - timedelta(seconds=1), until=moment + timedelta(seconds=1))
    assert [call.call_id for call in inside.calls] == [handle.call_id]
    assert inside.calls[0].time == moment and inside.calls[0].time.tzinfo is not None
    assert (await search(database, since=moment + timedelta(seconds=1))).calls == ()


async def test_close_writes_outcomes_nobody_waited_for(database):
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    await recorder.start()
    handles = [await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow") for _ in range(3)]
    for handle in handles:
        await recorder.record_outcome(handle, outcome="ok", timings=Timings(total_ms=1.5), wait=False)
    await recorder.close()
    for handle in handles:
        call = await get_call(database, handle.call_id)
        assert call is not None and call.outcome_name == "ok"
    report = await verify(database)
    assert report.ok and report.replicas[0].events == 7  # three calls, three outcomes, a closing checkpoint


async def test_a_sequential_agents_outcomes_ride_along_with_its_next_call(database):
    """One commit per call: each outcome nobody waits for goes with the next call's write.

    The agent thinks for a few milliseconds between calls, so over the run many outcomes' flush
    deadlines pass; none of them may split a ride-along into a commit of its own. An outcome is
    written alone only when the agent's next call came later than the flush delay after it,
    which a loaded machine can cause: those gaps are measured on the recorder's own clock, and
    only they may add a commit.
    """
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    await recorder.start()
    loop = asyncio.get_running_loop()
    calls = 30
    late = 0
    outcome_queued: float | None = None

    def count_late_flush() -> None:
        # The outcome's flush timer was armed no earlier than `outcome_queued`, and nothing runs
        # between this reading and the next enqueue, so a gap shorter than the delay (less the
        # loop's timer resolution) means the timer cannot have fired in it.
        nonlocal late
        if outcome_queued is not None and loop.time() - outcome_queued >= _OUTCOME_DELAY_SECONDS - 0.001:
            late += 1

    try:
        for _ in range(calls):
            count_late_flush()
            handle = await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
            outcome_queued = loop.time()
            await recorder.record_outcome(handle, outcome="ok", timings=Timings(total_ms=1.0), wait=False)
            await anyio.sleep(0.007)  # the agent's think time before its next call
        count_late_flush()
        during = recorder.stats().batches
    finally:
        await recorder.close()
    # The first call alone, then [previous outcome, call] per call: an outcome on its own only
    # after a gap longer than the flush delay.
    assert calls <= during <= calls + late
    report = await verify(database)
    assert report.ok and report.replicas[0].events == 2 * calls + 1


async def test_a_deleted_database_file_refuses_calls_instead_of_writing_into_the_void(tmp_path: Path):
    path = tmp_path / "gateway.db"
    database = Database(f"sqlite:///{path}")
    await database.migrate()
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1", write_timeout=5.0)
    await recorder.start()
    try:
        await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
        for name in ("gateway.db", "gateway.db-wal", "gateway.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        with pytest.raises(AuditUnavailable, match="deleted or moved"):
            await recorder.record_call(audit_call(AGENT, "crm.refused"), decision="allow")
        with pytest.raises(AuditUnavailable, match="unable to open"):
            await recorder.record_call(audit_call(AGENT, "crm.refused"), decision="allow")
        assert not path.exists()  # not recreated as an empty database without the audit table

        restored = Database(f"sqlite:///{path}")  # an operator puts a database back in place
        await restored.migrate()
        await restored.close()
        after = await recorder.record_call(audit_call(AGENT, "crm.after"), decision="allow")
        assert after.seq == 1  # a chain of its own in the new file, starting at its beginning
    finally:
        await recorder.close()
        await database.close()
    check = Database(f"sqlite:///{path}")
    try:
        assert (await verify(check)).ok
        assert [call.tool for call in (await search(check)).calls] == ["crm.after"]
    finally:
        await check.close()


async def test_a_file_that_is_not_a_database_refuses_calls_until_the_database_is_back(tmp_path: Path):
    path = tmp_path / "gateway.db"
    database = Database(f"sqlite:///{path}")
    await database.migrate()
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1", write_timeout=5.0)
    await recorder.start()
    saved = tmp_path / "saved.db"
    try:
        await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
        with sqlite3.connect(path) as source, sqlite3.connect(saved) as copy:
            source.backup(copy)
        for name in ("gateway.db", "gateway.db-wal", "gateway.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        path.write_bytes(b"this is not a database" * 200)
        for _ in range(2):  # the first fails on the vanished file, the second on opening the new one
            with pytest.raises(AuditUnavailable, match="could not record"):
                await recorder.record_call(audit_call(AGENT, "crm.refused"), decision="allow")
        path.unlink()
        saved.rename(path)
        after = await recorder.record_call(audit_call(AGENT, "crm.after"), decision="allow")
        assert after.seq == 2  # the chain continues from the head stored in the database put back
    finally:
        await recorder.close()
        await database.close()
    check = Database(f"sqlite:///{path}")
    try:
        assert (await verify(check)).ok
        assert sorted(call.tool for call in (await search(check)).calls) == ["crm.after", "crm.lookup"]
    finally:
        await check.close()


async def test_sqlite_databases_the_writer_thread_cannot_serve_use_the_engine(tmp_path: Path):
    database = Database(f"sqlite:///file:{tmp_path / 'gateway.db'}?mode=rwc&uri=true")
    await database.migrate()
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    await recorder.start()
    try:
        handle = await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
        await recorder.record_outcome(handle, outcome="ok")
    finally:
        await recorder.close()
    try:
        assert (await get_call(database, handle.call_id)).outcome_name == "ok"
        assert (await verify(database)).ok
    finally:
        await database.close()


async def test_the_write_timeout_bounds_the_wait_for_a_lock_even_with_a_longer_busy_timeout(tmp_path: Path):
    path = tmp_path / "gateway.db"
    database = Database(f"sqlite:///{path}", busy_timeout=30.0)
    await database.migrate()
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1", write_timeout=0.5)
    await recorder.start()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(AuditUnavailable, match="could not record"):
            await recorder.record_call(audit_call(AGENT, "crm.refused"), decision="allow")
        assert time.monotonic() - started < 10  # the agent hears back in about the write timeout, not 30 s
        holder.execute("ROLLBACK")  # the refused insert, still waiting for the lock, gets it now
        after = await recorder.record_call(audit_call(AGENT, "crm.after"), decision="allow")
        assert after.seq == 2  # and rolls back instead of committing an event for a refused call
    finally:
        holder.close()
        await recorder.close()
    try:
        assert (await verify(database)).ok  # contiguous, nothing written twice
        assert sorted(call.tool for call in (await search(database)).calls) == ["crm.after", "crm.lookup"]
    finally:
        await database.close()


async def test_each_database_gets_the_fastest_store_that_can_serve_it(database, tmp_path: Path):
    direct = {"sqlite": SqliteEventStore, "postgresql": PostgresEventStore}[database.dialect]
    store = await open_event_store(database, write_timeout=1.0)
    assert isinstance(store, direct)
    await store.close()
    in_memory = Database("sqlite:///:memory:")  # private to one connection: only SQLAlchemy's can reach it
    try:
        store = await open_event_store(in_memory, write_timeout=1.0)
        assert isinstance(store, SqlAlchemyEventStore)
        await store.close()
    finally:
        await in_memory.close()
