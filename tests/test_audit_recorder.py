"""The write-ahead recorder against real SQLite and PostgreSQL: durability, group commit, failures, crashes."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
import uuid

import anyio
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext
from sqlalchemy import text

from audit_calls import audit_call
from gateway.audit import (
    AuditRecorder,
    Redactor,
    Timings,
    default_replica_id,
    get_call,
    read_checkpoints,
    search,
    verify,
)
from gateway.audit.entry import new_call_id
from gateway.calls import Call, Origin, Target
from gateway.errors import AuditUnavailable, BackendError, BackendTimeout
from gateway.identity.principal import Principal
from gateway.storage import Database

pytestmark = pytest.mark.anyio

AGENT = Principal(agent="billing-bot", roles=("finance",), user="alice@example.com", credential_id="key_0001")


async def _rows(database: Database, where: str = "1=1") -> list:
    async with database.engine.connect() as connection:
        return (
            await connection.execute(
                text(f"SELECT replica_id, seq, kind, call_id, content FROM audit_events WHERE {where} ORDER BY seq")
            )
        ).all()


async def _refuse_writes(database: Database) -> None:
    """Make the database refuse every audit insert, as a full disk would."""
    async with database.engine.begin() as connection:
        if database.dialect == "sqlite":
            await connection.execute(
                text(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events "
                    "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
                )
            )
        else:
            await connection.execute(
                text(
                    "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = '53100'; "
                    "END $$"
                )
            )
            await connection.execute(
                text(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
                )
            )


async def _accept_writes(database: Database) -> None:
    async with database.engine.begin() as connection:
        if database.dialect == "sqlite":
            await connection.execute(text("DROP TRIGGER refuse_audit"))
        else:
            await connection.execute(text("DROP TRIGGER refuse_audit ON audit_events"))


async def test_record_call_is_committed_when_it_returns(database, database_url):
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    await recorder.start()
    try:
        origin = Origin(
            AGENT,
            request_id=7,
            session_id="s-1",
            protocol_version="2026-07-28",
            client_name="claude-code",
            client_version="2.1",
        )
        call = Call(
            "tools/call",
            origin,
            "crm.update_record",
            {"record_id": "r-17", "fields": {"status": "closed"}},
            reasoning="The customer asked to close the ticket.",
            workflow="wf-9",
            target=Target("crm", "update_record"),
        )
        handle = await recorder.record_call(call, decision="allow", policy_ids=("finance-can-update",))
        # Read it through a separate engine and connection: committed, not just buffered.
        other = Database(database_url)
        try:
            rows = await _rows(other)
        finally:
            await other.close()
        assert [(r.replica_id, r.seq, r.kind, r.call_id) for r in rows] == [("gw-1", 1, "call", handle.call_id)]
        stored = orjson.loads(rows[0].content)["data"]
        assert stored["agent"] == "billing-bot" and stored["user"] == "alice@example.com"
        assert stored["roles"] == ["finance"] and stored["credential_id"] == "key_0001"
        assert stored["name"] == "crm.update_record" and stored["original_name"] == "update_record"
        assert stored["connector"] == "crm" and stored["decision"] == "allow"
        assert stored["policy_ids"] == ["finance-can-update"] and stored["workflow_id"] == "wf-9"
        assert stored["client"] == {"name": "claude-code", "version": "2.1"}
        assert stored["arguments"]["value"] == {"record_id": "r-17", "fields": {"status": "closed"}}

        await recorder.record_outcome(
            handle,
            outcome="ok",
            result=b'{"content":[]}',
            timings=Timings(policy_ms=0.2, backend_ms=11.5, total_ms=12.1),
        )
        call = await get_call(database, handle.call_id)
        assert call is not None and call.outcome_name == "ok"
        assert call.outcome["latency_ms"] == {"policy": 0.2, "backend": 11.5, "total": 12.1}
        assert call.outcome["result"]["bytes"] == len(b'{"content":[]}')
        with pytest.raises(ValueError, match="not open"):
            await recorder.record_outcome(handle, outcome="ok")
    finally:
        await recorder.close()
    assert (await verify(database)).ok


async def test_an_outcome_keeps_the_message_of_the_gateways_own_errors_only(database):
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    await recorder.start()
    try:
        ours = await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
        await recorder.record_outcome(ours, outcome="timeout", error=BackendTimeout("crm did not answer within 30 s"))
        foreign = await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
        await recorder.record_outcome(
            foreign, outcome="backend_error", error=RuntimeError("connect to postgresql://svc:pw@db/x failed")
        )
        clean = await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
        await recorder.record_outcome(clean, outcome="ok")
    finally:
        await recorder.close()
    errors = [(await get_call(database, handle.call_id)).outcome["error"] for handle in (ours, foreign, clean)]
    assert errors == [
        {"type": "BackendTimeout", "message": "crm did not answer within 30 s"},
        {"type": "RuntimeError", "message": None},
        None,
    ]


async def test_a_call_names_the_trace_its_request_belongs_to(database):
    """The audit entry leads to the trace of the same request (and only a real one)."""
    traced = SpanContext(trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736, span_id=0x00F067AA0BA902B7, is_remote=False)
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    await recorder.start()
    try:
        with trace.use_span(NonRecordingSpan(traced)):
            inside = await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
        outside = await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
    finally:
        await recorder.close()
    assert (await get_call(database, inside.call_id)).call["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert (await get_call(database, outside.call_id)).call["trace_id"] is None


async def test_concurrent_callers_share_commits(database):
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    await recorder.start()
    try:
        handles = await asyncio.gather(
            *(
                recorder.record_call(audit_call(AGENT, "crm.lookup", arguments={"n": n}), decision="allow")
                for n in range(32)
            )
        )
        stats = recorder.stats()
        assert stats.max_batch_size > 1, stats
        assert stats.batches < 32
        assert sorted(handle.seq for handle in handles) == list(range(1, 33))
        await asyncio.gather(*(recorder.record_outcome(handle, outcome="ok") for handle in handles))
    finally:
        await recorder.close()
    assert (await verify(database)).ok
    page = await search(database, outcome="ok", limit=100)
    assert len(page.calls) == 32


async def test_refused_writes_refuse_the_call_then_recover_by_themselves(database):
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    await recorder.start()
    try:
        before = await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
        await _refuse_writes(database)
        with pytest.raises(AuditUnavailable, match="could not record"):
            await recorder.record_call(audit_call(AGENT, "crm.delete"), decision="allow")
        # An outcome that cannot be written yet is kept and written later, in order.
        await recorder.record_outcome(before, outcome="ok", timings=Timings(total_ms=3.0))
        assert recorder.stats().retrying == 1
        await recorder.record_auth_refused("unknown API key", "10.0.0.7")
        await _accept_writes(database)

        after = await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
        assert recorder.stats().retrying == 0
    finally:
        await recorder.close()
    rows = await _rows(database)
    kinds = [(row.seq, row.kind, row.call_id) for row in rows]
    assert [seq for seq, _, _ in kinds] == list(range(1, len(rows) + 1))  # no gap: refused batches left no trace
    assert ("call", before.call_id) in [(kind, call_id) for _, kind, call_id in kinds]
    assert all(orjson.loads(row.content)["data"].get("name") != "crm.delete" for row in rows)
    order = [(kind, call_id) for _, kind, call_id in kinds]
    assert order.index(("outcome", before.call_id)) < order.index(("call", after.call_id))
    assert "auth_refused" in [kind for kind, _ in order]
    assert (await verify(database)).ok


async def test_a_lock_held_elsewhere_refuses_the_call_until_it_is_released(database_url):
    setup = Database(database_url)
    await setup.migrate()
    await setup.close()
    database = Database(database_url, busy_timeout=0.2)
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1", write_timeout=1.0)
    await recorder.start()
    blocker = Database(database_url)
    try:
        await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
        async with blocker.engine.connect() as connection:
            if blocker.dialect == "sqlite":
                raw = await connection.execution_options(isolation_level="AUTOCOMMIT")
                await raw.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                await connection.execute(text("LOCK TABLE audit_events IN EXCLUSIVE MODE"))
            with pytest.raises(AuditUnavailable):
                await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
            if blocker.dialect == "sqlite":
                await raw.exec_driver_sql("ROLLBACK")
            else:
                await connection.rollback()
        handle = await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
        assert handle.seq == 2 and recorder.stats().failed_batches == 1  # the refused call left no gap
    finally:
        await recorder.close()
        await blocker.close()
    try:
        assert (await verify(database)).ok
    finally:
        await database.close()


_CRASHING_GATEWAY = """
import asyncio, sys
from gateway.audit import AuditRecorder, Redactor
from gateway.calls import Call, Origin
from gateway.identity.principal import Principal
from gateway.storage import Database

async def main():
    recorder = AuditRecorder(Database(sys.argv[1]), Redactor(), replica_id="gw-1")
    await recorder.start()
    agent = Principal("billing-bot", ("finance",))
    finished = await recorder.record_call(Call("tools/call", Origin(agent), "crm.lookup"), decision="allow")
    await recorder.record_outcome(finished, outcome="ok")
    for n in range(3):
        call = Call("tools/call", Origin(agent), "crm.update", {"n": n})
        handle = await recorder.record_call(call, decision="allow")
        print(handle.call_id, flush=True)
    print("calls in flight", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_calls_in_flight_when_the_process_is_killed_get_the_outcome_unknown(database, database_url):
    process = await anyio.open_process([sys.executable, "-c", _CRASHING_GATEWAY, database_url])
    in_flight: list[str] = []
    try:
        assert process.stdout is not None
        buffered = b""
        with anyio.fail_after(60):
            while b"calls in flight" not in buffered:
                buffered += await process.stdout.receive()
        in_flight = buffered.decode().split("calls in flight")[0].split()
        os.kill(process.pid, signal.SIGKILL)
    finally:
        await process.wait()
        await process.aclose()
    assert len(in_flight) == 3

    restarted = AuditRecorder(database, Redactor(), replica_id="gw-1")
    report = await restarted.start()
    try:
        assert report.recovered_calls == 3 and set(report.call_ids) == set(in_flight)
        other = AuditRecorder(database, Redactor(), replica_id="gw-2")
        assert (await other.start()).recovered_calls == 0  # another replica's open calls are not its business
        await other.close()
    finally:
        await restarted.close()
    for call_id in in_flight:
        call = await get_call(database, call_id)
        assert call is not None and call.outcome_name == "unknown"
        assert call.outcome["recovered"] is True
    recovered = await _rows(database, "kind = 'recovered'")
    assert len(recovered) == 1 and orjson.loads(recovered[0].content)["data"]["calls"] == 3
    assert (await verify(database)).ok

    # After a clean close nothing is left open, and the next start finds nothing to recover.
    again = AuditRecorder(database, Redactor(), replica_id="gw-1")
    assert (await again.start()).recovered_calls == 0
    await again.close()


async def test_two_replicas_write_their_own_chains_concurrently(database, database_url):
    second_process = Database(database_url)
    first = AuditRecorder(database, Redactor(), replica_id="gw-a", checkpoint_every=20)
    second = AuditRecorder(second_process, Redactor(), replica_id="gw-b", checkpoint_every=20)
    await first.start()
    await second.start()

    async def traffic(recorder: AuditRecorder) -> None:
        for n in range(15):
            handles = await asyncio.gather(
                *(recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow") for _ in range(4))
            )
            await asyncio.gather(
                *(recorder.record_outcome(handle, outcome="ok", timings=Timings(total_ms=n)) for handle in handles)
            )

    try:
        await asyncio.gather(traffic(first), traffic(second))
    finally:
        await first.close()
        await second.close()
        await second_process.close()
    report = await verify(database)
    assert report.ok, report.problems
    # 120 calls and outcomes each, a checkpoint after every 20 of them, and one more at close.
    assert {replica.replica_id: replica.events for replica in report.replicas} == {"gw-a": 127, "gw-b": 127}
    assert all(replica.checkpoints == 7 for replica in report.replicas)


async def test_checkpoints_are_signed_and_cover_the_head(database):
    key = Ed25519PrivateKey.generate()
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1", signing_key=key, checkpoint_every=5)
    await recorder.start()
    try:
        for _ in range(12):
            await recorder.record_call(audit_call(AGENT, method="tools/list"), decision="allow")
    finally:
        await recorder.close()
    checkpoints = await read_checkpoints(database)
    # One after every 5 calls (each vouching for the event just before it), and one on close.
    assert [(c.seq, c.event_seq) for c in checkpoints] == [(5, 6), (11, 12), (14, 15)]
    for checkpoint in checkpoints:
        key.public_key().verify(base64.b64decode(checkpoint.signature), checkpoint.statement())
    assert (await verify(database, public_key=key.public_key())).ok


async def test_a_caller_cancelled_before_its_call_is_written_leaves_no_open_call(database):
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    await recorder.start()
    try:
        task = asyncio.create_task(recorder.record_call(audit_call(AGENT, "crm.slow"), decision="allow"))
        await asyncio.sleep(0)  # one turn of the loop: the task queues its event and waits for the commit
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await recorder.record_call(audit_call(AGENT, "crm.next"), decision="allow")
    finally:
        await recorder.close()
    # Cancelled while its entry was being written: left out, or (when the commit was already under
    # way) recorded with an outcome saying it did not run. Never an open call.
    assert [call.outcome_name for call in (await search(database, tool="crm.slow")).calls] in ([], ["refused"])
    assert len((await search(database, tool="crm.next")).calls) == 1
    assert (await verify(database)).ok


async def test_a_caller_cancelled_while_it_writes_the_queue_leaves_nothing_lost_or_waiting(database):
    """A lone call's caller writes the queued events itself; cancelled outright meanwhile, it must
    neither lose the outcome it took along nor strand a call queued behind it."""
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    await recorder.start()
    try:
        first = await recorder.record_call(audit_call(AGENT, "crm.first"), decision="allow")
        await recorder.record_outcome(first, outcome="ok", wait=False)  # queued, to ride along
        task = asyncio.create_task(recorder.record_call(audit_call(AGENT, "crm.cancelled"), decision="allow"))
        await asyncio.sleep(0)  # it takes the queue and waits for its commit
        other = asyncio.create_task(recorder.record_call(audit_call(AGENT, "crm.other"), decision="allow"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        handle = await asyncio.wait_for(other, 10)
        await recorder.record_outcome(handle, outcome="ok")
    finally:
        await recorder.close()
    assert (await verify(database)).ok
    outcomes = {call.tool: call.outcome_name for call in (await search(database, limit=10)).calls}
    assert outcomes["crm.first"] == "ok" and outcomes["crm.other"] == "ok"
    # Either never written, or written and then recorded as refused: never a call left open.
    assert outcomes.get("crm.cancelled", "refused") == "refused"


async def test_recording_before_start_or_after_close_is_refused(database):
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    with pytest.raises(AuditUnavailable, match="not running"):
        await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
    await recorder.start()
    await recorder.close()
    with pytest.raises(AuditUnavailable, match="not running"):
        await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
    with pytest.raises(ValueError, match="replica id"):
        AuditRecorder(database, Redactor(), replica_id="bad replica!")


@pytest.mark.postgres
async def test_a_database_restart_between_calls_costs_no_call(postgres_url):
    database = Database(postgres_url)
    await database.migrate()
    recorder = AuditRecorder(database, Redactor(), replica_id=default_replica_id())
    await recorder.start()
    try:
        await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
        # What a server restart does to every open connection, the recorder's kept one included.
        admin = Database(postgres_url)
        try:
            async with admin.engine.connect() as connection:
                terminated = await connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
                assert any(terminated.scalars())
        finally:
            await admin.close()
        handle = await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
        assert handle.seq == 2 and recorder.stats().failed_batches == 0
    finally:
        await recorder.close()
    try:
        assert (await verify(database)).ok
    finally:
        await database.close()


async def test_huge_deep_binary_and_broken_values_are_recorded_bounded(database):
    deep: dict = {}
    node = deep
    for _ in range(10_000):
        node["next"] = {}
        node = node["next"]
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    await recorder.start()
    try:
        huge = await recorder.record_call(
            audit_call(AGENT, "files.upload", arguments={"body": "0123456789" * 1_000_000}), decision="allow"
        )
        nested = await recorder.record_call(audit_call(AGENT, "tree.put", arguments=deep), decision="allow")
        odd = await recorder.record_call(
            audit_call(
                Principal(agent="bot\x00one", roles=()),
                "blob.put",
                arguments={"png": b"\x89PNG\r\n\x1a\n\xff", "text": "half \udc80 a character", "nul": "a\x00b"},
                reasoning="NUL \x00 and a lone \ud800 surrogate",
            ),
            decision="allow",
        )
        await recorder.record_outcome(
            huge, outcome="ok", result=b"\xff" * 1024, error=BackendError("bad \x00 byte", code=-32000)
        )
    finally:
        await recorder.close()
    stored = (await get_call(database, huge.call_id)).call["arguments"]
    assert stored["truncated"] and stored["value"] is None and stored["bytes"] > 10_000_000
    assert len(stored["preview"].encode()) <= 64 * 1024 and len(stored["sha256"]) == 64
    assert "nested too deeply" in orjson.dumps((await get_call(database, nested.call_id)).call).decode()
    odd_call = (await get_call(database, odd.call_id)).call
    assert odd_call["arguments"]["value"]["png"].startswith("[BINARY: 9 bytes")
    assert odd_call["reasoning"] == "NUL \x00 and a lone \\ud800 surrogate"
    assert (await verify(database)).ok


def test_call_ids_are_uuid7_in_the_order_calls_were_recorded():
    """Time-ordered ids keep each commit's call-id index entries together (and sort like the log)."""
    ids = [new_call_id(now_ns=1_796_000_000_000_000_000 + step * 1_000_000) for step in range(50)]

    assert ids == sorted(ids) and len(set(ids)) == 50
    assert all(uuid.UUID(call_id).version == 7 and len(call_id) == 32 for call_id in ids)
    assert new_call_id() != new_call_id()  # the same millisecond still gives distinct ids


async def test_recorded_calls_get_uuid7_ids(database):
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    await recorder.start()
    try:
        handle = await recorder.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
    finally:
        await recorder.close()
    assert uuid.UUID(handle.call_id).version == 7
