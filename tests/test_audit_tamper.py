"""Tampering behind the recorder's back, on SQLite and PostgreSQL: each kind is caught and named.

Every test builds a real log through the recorder, then edits the database directly the way
someone with write access would, and checks what `verify` reports.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from audit_calls import audit_call
from gateway.audit import AuditRecorder, Redactor, Timings, prune, read_checkpoints, search, verify
from gateway.audit.chain import chain_hash, event_content
from gateway.identity.principal import Principal
from gateway.storage import Database

pytestmark = pytest.mark.anyio

AGENT = Principal(agent="billing-bot", roles=("finance",), user="alice@example.com")
KEY = Ed25519PrivateKey.generate()


async def _record(database: Database, calls: int = 8, *, replica_id: str = "gw-1") -> None:
    """calls x (call + outcome), a checkpoint after every 4 events, one more on close."""
    recorder = AuditRecorder(database, Redactor(), replica_id=replica_id, signing_key=KEY, checkpoint_every=4)
    await recorder.start()
    try:
        for n in range(calls):
            handle = await recorder.record_call(
                audit_call(AGENT, "crm.lookup", arguments={"n": n}, reasoning=f"step {n}"), decision="allow"
            )
            await recorder.record_outcome(handle, outcome="ok", timings=Timings(total_ms=n))
    finally:
        await recorder.close()


async def _row(database: Database, seq: int, replica_id: str = "gw-1"):
    async with database.engine.connect() as connection:
        return (
            await connection.execute(
                text("SELECT * FROM audit_events WHERE replica_id = :r AND seq = :s"), {"r": replica_id, "s": seq}
            )
        ).one()


async def _execute(database: Database, statement: str, **params) -> None:
    async with database.engine.begin() as connection:
        await connection.execute(text(statement), params)


def _edited(content: str, **changes) -> str:
    parsed = orjson.loads(content)
    parsed["data"].update(changes)
    return orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS).decode()


async def _first_problem(database: Database, **options):
    report = await verify(database, **options)
    assert not report.ok, "the tampering went unnoticed"
    return report.problems[0]


async def test_an_untouched_log_verifies(database):
    await _record(database)
    report = await verify(database, checkpoints=await read_checkpoints(database), public_key=KEY.public_key())
    assert report.ok, report.problems
    assert report.events == 21 and report.checkpoints_checked == 5


async def test_a_changed_payload_is_named(database):
    await _record(database)
    row = await _row(database, 3)
    assert row.kind == "call"
    await _execute(
        database,
        "UPDATE audit_events SET content = :c WHERE seq = 3",
        c=_edited(row.content, reasoning="nothing to see"),
    )
    problem = await _first_problem(database)
    assert (problem.kind, problem.seq) == ("changed", 3)
    assert "no longer matches" in problem.detail


async def test_a_changed_index_column_is_named(database):
    await _record(database)
    # Hide a call from searches by agent, without touching the hashed content.
    await _execute(database, "UPDATE audit_events SET agent = 'someone-else' WHERE seq = 3")
    problem = await _first_problem(database)
    assert (problem.kind, problem.seq) == ("changed", 3)
    assert "agent" in problem.detail


async def test_an_edit_with_its_own_hash_recomputed_is_named(database):
    await _record(database)
    row = await _row(database, 3)
    content = _edited(row.content, decision="deny")
    await _execute(
        database,
        "UPDATE audit_events SET content = :c, decision = 'deny', hash = :h WHERE seq = 3",
        c=content,
        h=chain_hash(row.prev_hash, content.encode()),
    )
    problem = await _first_problem(database)
    assert (problem.kind, problem.seq) == ("changed", 3)


async def test_a_deleted_event_is_named(database):
    await _record(database)
    await _execute(database, "DELETE FROM audit_events WHERE seq = 7")
    problem = await _first_problem(database)
    assert (problem.kind, problem.seq) == ("deleted", 7)


async def test_deleting_the_first_events_is_not_mistaken_for_a_prune(database):
    await _record(database)
    await _execute(database, "DELETE FROM audit_events WHERE seq <= 2")
    problem = await _first_problem(database)
    assert problem.kind == "deleted" and problem.seq == 2
    assert "no checkpoint anchors" in problem.detail


async def test_a_deletion_hidden_by_renumbering_is_named(database):
    await _record(database)
    await _execute(database, "DELETE FROM audit_events WHERE seq = 7")
    await _execute(database, "UPDATE audit_events SET seq = -seq WHERE seq > 7")
    await _execute(database, "UPDATE audit_events SET seq = -seq - 1 WHERE seq < 0")
    problem = await _first_problem(database)
    assert (problem.kind, problem.seq) == ("deleted", 7)


async def test_a_forged_event_inserted_in_the_middle_is_named(database):
    await _record(database)
    before, template = await _row(database, 5), await _row(database, 3)
    # Make room at seq 6 (as the primary key demands), then insert a well-formed forged event.
    await _execute(database, "UPDATE audit_events SET seq = -seq WHERE seq >= 6")
    await _execute(database, "UPDATE audit_events SET seq = -seq + 1 WHERE seq < 0")
    forged = orjson.loads(template.content)
    moment = datetime.fromisoformat(forged["time"])
    content = event_content(
        replica_id="gw-1",
        seq=6,
        kind="call",
        time=moment,
        call_id="f" * 32,
        data={**forged["data"], "name": "crm.export_all"},
    )
    await _execute(
        database,
        "INSERT INTO audit_events (replica_id, seq, kind, time, call_id, agent, user_id, tool, decision, "
        "reasoning, prev_hash, hash, content) VALUES ('gw-1', 6, 'call', :t, :cid, :a, :u, 'crm.export_all', "
        ":d, :rs, :p, :h, :c)",
        t=moment,
        cid="f" * 32,
        a=forged["data"]["agent"],
        u=forged["data"]["user"],
        d=forged["data"]["decision"],
        rs=forged["data"]["reasoning"],
        p=before.hash,
        h=chain_hash(before.hash, content),
        c=content.decode(),
    )
    problem = await _first_problem(database)
    assert (problem.kind, problem.seq) == ("inserted", 6), problem


async def test_two_swapped_events_are_named(database):
    await _record(database)
    fourth, fifth = await _row(database, 4), await _row(database, 5)
    for target, source in ((4, fifth), (5, fourth)):
        await _execute(
            database,
            "UPDATE audit_events SET kind = :k, call_id = :cid, agent = :a, user_id = :u, tool = :t, decision = :d, "
            "outcome = :o, reasoning = :rs, time = :tm, prev_hash = :p, hash = :h, content = :c WHERE seq = :s",
            k=source.kind,
            cid=source.call_id,
            a=source.agent,
            u=source.user_id,
            t=source.tool,
            d=source.decision,
            o=source.outcome,
            rs=source.reasoning,
            tm=source.time,
            p=source.prev_hash,
            h=source.hash,
            c=source.content,
            s=target,
        )
    problem = await _first_problem(database)
    assert (problem.kind, problem.seq) == ("reordered", 4)


async def _rewrite_consistently(database: Database) -> None:
    """Change one call's agent and recompute every hash after it, checkpoints included (no key)."""
    async with database.engine.begin() as connection:
        rows = (await connection.execute(text("SELECT * FROM audit_events ORDER BY seq"))).all()
        prev = rows[0].prev_hash
        for row in rows:
            parsed = orjson.loads(row.content)
            if row.seq == 3:
                parsed["data"]["agent"] = "innocent-bot"
            if row.kind == "checkpoint":
                parsed["data"]["hash"] = prev
            content = orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS)
            new_hash = chain_hash(prev, content)
            await connection.execute(
                text(
                    "UPDATE audit_events SET content = :c, prev_hash = :p, hash = :h, "
                    "agent = CASE WHEN seq = 3 THEN 'innocent-bot' ELSE agent END WHERE seq = :s"
                ),
                {"c": content.decode(), "p": prev, "h": new_hash, "s": row.seq},
            )
            prev = new_hash


async def test_a_consistent_rewrite_is_caught_by_exported_checkpoints_and_signatures(database):
    await _record(database)
    exported = await read_checkpoints(database)
    await _rewrite_consistently(database)

    # The chain alone cannot tell: this is what checkpoints kept elsewhere are for.
    assert (await verify(database)).ok

    problem = await _first_problem(database, checkpoints=exported)
    assert problem.kind == "rewritten" and problem.seq == 4
    assert "from its start" in problem.detail

    problem = await _first_problem(database, public_key=KEY.public_key())
    assert (problem.kind, problem.seq) == ("bad_signature", 5)


async def test_removing_the_newest_events_is_caught_by_an_exported_checkpoint(database):
    await _record(database)
    exported = await read_checkpoints(database)
    await _execute(database, "DELETE FROM audit_events WHERE seq >= 19")
    assert (await verify(database)).ok  # a shorter chain is still a chain
    problem = await _first_problem(database, checkpoints=exported)
    assert (problem.kind, problem.seq) == ("deleted", 19)


async def test_a_forged_checkpoint_file_is_caught(database):
    await _record(database)
    exported = await read_checkpoints(database)
    forged = [dataclasses.replace(exported[0], hash="0" * 64), *exported[1:]]
    problem = await _first_problem(database, checkpoints=forged, public_key=KEY.public_key())
    assert (problem.kind, problem.seq) == ("bad_signature", exported[0].seq)
    other_key = Ed25519PrivateKey.generate().public_key()
    problem = await _first_problem(database, public_key=other_key)
    assert problem.kind == "bad_signature"


async def test_prune_keeps_the_rest_verifiable_and_still_guarded(database):
    await _record(database, calls=8)
    exported = await read_checkpoints(database)
    cutoff = datetime.now(UTC)
    await _record(database, calls=3)
    report = await prune(database, cutoff)
    # The last checkpoint before the cutoff is the first run's closing one (seq 21): it stays.
    assert report.deleted == 20 and report.replicas[0].starts_at == 21
    after = await verify(database, checkpoints=exported, public_key=KEY.public_key())
    assert after.ok, after.problems
    assert any("pruned" in note for note in after.notes)
    assert len((await search(database, limit=100)).calls) == 3

    row = await _row(database, 23)
    assert row.kind == "outcome"
    await _execute(
        database, "UPDATE audit_events SET content = :c WHERE seq = 23", c=_edited(row.content, outcome="ok!")
    )
    problem = await _first_problem(database)
    assert (problem.kind, problem.seq) == ("changed", 23)


async def test_prune_without_a_checkpoint_before_the_cutoff_deletes_nothing(database):
    cutoff = datetime.now(UTC)
    await _record(database, calls=2)
    assert (await prune(database, cutoff)).deleted == 0
    assert (await verify(database)).ok


async def test_each_replica_chain_is_checked_on_its_own(database):
    await _record(database, calls=3, replica_id="gw-a")
    await _record(database, calls=3, replica_id="gw-b")
    await _execute(database, "DELETE FROM audit_events WHERE replica_id = 'gw-b' AND seq = 2")
    report = await verify(database)
    assert [(p.replica_id, p.kind, p.seq) for p in report.problems] == [("gw-b", "deleted", 2)]
