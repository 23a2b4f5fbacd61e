"""Idempotency records on SQLite and PostgreSQL: one taker per key, crash recovery, expiry; the settings checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from gateway.config import load_connector
from gateway.coordination.idempotency_store import IdempotencyRecord, IdempotencyStore, NewRun
from gateway.errors import ConfigError, IdempotencyRecordRunning, UnknownIdempotencyRecord
from gateway.executions import ExecutionState
from gateway.storage import Database

pytestmark = pytest.mark.anyio


def run(key: str = "k" * 64) -> NewRun:
    return NewRun(key, "pay__pay_invoice", "pay", '{"invoice_id":"INV-1"}', "payer-a", None)


async def test_of_many_replicas_taking_one_key_at_once_exactly_one_runs_it(database_url: str) -> None:
    replicas = [Database(database_url) for _ in range(2)]
    await replicas[0].migrate()
    stores = [IdempotencyStore(db, executor=f"replica-{i}") for i, db in enumerate(replicas)]
    taken: list[IdempotencyRecord | None] = []

    async def take(store: IdempotencyStore) -> None:
        taken.append(await store.take(run()))

    try:
        async with anyio.create_task_group() as group:
            for _ in range(8):
                for store in stores:
                    group.start_soon(take, store)
        winners = [record for record in taken if record is not None]
        assert len(taken) == 16 and len(winners) == 1
        found = await stores[0].find(run().key_digest)
        assert found is not None and found.id == winners[0].id and found.state is ExecutionState.EXECUTING
    finally:
        for db in replicas:
            await db.close()


async def test_a_crashed_replicas_runs_become_unknown_and_only_its_own(database: Database) -> None:
    mine = IdempotencyStore(database, executor="dead")
    theirs = IdempotencyStore(database, executor="alive")
    stranded = await mine.take(run("a" * 64))
    running = await theirs.take(run("b" * 64))
    assert stranded is not None and running is not None
    recovered = await mine.recover_after_crash(executor="dead")
    assert [r.id for r in recovered] == [stranded.id] and recovered[0].state is ExecutionState.UNKNOWN
    assert recovered[0].expires_at is None  # kept until an operator clears it
    assert (await theirs.get(running.id)).state is ExecutionState.EXECUTING
    await theirs.succeeded(running.id, call_id="c1", result=b"{}", truncated=False, expires_at=datetime.now(UTC))
    await theirs.unknown(running.id, call_id="c1")  # a finished run does not move again
    assert (await theirs.get(running.id)).state is ExecutionState.SUCCEEDED
    cleared = await mine.clear(stranded.id)
    assert cleared.state is ExecutionState.UNKNOWN
    with pytest.raises(UnknownIdempotencyRecord, match="gateway idempotency list"):
        await mine.get(stranded.id)


async def test_a_running_call_keeps_its_record_when_an_operator_tries_to_clear_it(database: Database) -> None:
    store = IdempotencyStore(database, executor="alive")
    running = await store.take(run())
    assert running is not None
    with pytest.raises(IdempotencyRecordRunning, match="still running, so it was not cleared"):
        await store.clear(running.id)
    assert (await store.get(running.id)).state is ExecutionState.EXECUTING
    assert await store.take(run()) is None  # an identical call still finds it taken
    await store.succeeded(running.id, call_id="c", result=b"{}", truncated=False, expires_at=datetime.now(UTC))
    assert (await store.clear(running.id)).state is ExecutionState.SUCCEEDED  # once it ended, it may be cleared


async def test_expired_records_are_dropped_and_their_key_taken_again(database: Database) -> None:
    now = datetime.now(UTC)
    store = IdempotencyStore(database, executor="r", clock=lambda: now)
    first = await store.take(run())
    assert first is not None
    await store.succeeded(first.id, call_id="c", result=b"{}", truncated=False, expires_at=now + timedelta(hours=1))
    assert await store.drop_expired() == 0 and await store.take(run()) is None
    later = IdempotencyStore(database, executor="r", clock=lambda: now + timedelta(hours=2))
    assert await later.drop_expired() == 1
    again = await later.take(run())
    assert again is not None and again.id != first.id


def test_a_bad_idempotency_setting_is_refused_naming_file_line_and_tool(tmp_path: Path) -> None:
    file = tmp_path / "pay.toml"
    file.write_text('kind = "mcp-stdio"\ncommand = ["x"]\n\n[tools.pay_invoice]\nidempotency_key = "invoice_id"\n')
    with pytest.raises(ConfigError) as refused:
        load_connector(file)
    message = str(refused.value)
    assert f"{file}:5" in message and "tools.pay_invoice.idempotency_key" in message
    assert "is not an argument path" in message
    file.write_text('kind = "mcp-stdio"\ncommand = ["x"]\n\n[tools.pay_invoice]\nidempotency_window = "soon"\n')
    with pytest.raises(ConfigError, match=r"tools\.pay_invoice\.idempotency_window"):
        load_connector(file)
    file.write_text('kind = "mcp-stdio"\ncommand = ["x"]\n\n[tools.pay_invoice]\nidempotency_wait = 5\n')
    with pytest.raises(ConfigError, match="idempotency_wait set without idempotency_key"):
        load_connector(file)
