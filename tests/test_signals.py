"""Signals between gateway processes: in-process on SQLite, LISTEN/NOTIFY on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from functools import partial

import anyio
import anyio.to_thread
import asyncpg
import pytest

from gateway.errors import SignalTooLarge
from gateway.signals import (
    MAX_PAYLOAD_BYTES,
    InProcessSignals,
    PostgresSignals,
    Signals,
    open_signals,
)
from harness import eventually

pytestmark = pytest.mark.anyio

DEADLINE = 10.0


@asynccontextmanager
async def started(url: str) -> AsyncIterator[Signals]:
    signals = open_signals(url)
    async with anyio.create_task_group() as tasks:
        await tasks.start(signals.run)
        yield signals
        tasks.cancel_scope.cancel()


def test_the_storage_url_chooses_the_broker(tmp_path) -> None:
    assert isinstance(open_signals(f"sqlite:///{tmp_path / 'g.db'}"), InProcessSignals)
    assert isinstance(open_signals("postgresql://u@db.example/gw?sslmode=require"), PostgresSignals)


async def test_in_process_subscribers_get_what_is_published(tmp_path) -> None:
    async with started(f"sqlite:///{tmp_path / 'g.db'}") as signals:
        async with signals.subscribe("cancel") as first, signals.subscribe("cancel") as second:
            async with signals.subscribe("other") as elsewhere:
                await signals.publish("cancel", {"session": "s1", "request_id": 7})
                for subscription in (first, second):
                    with _deadline():
                        received = await subscription.get()
                    assert received.payload == {"session": "s1", "request_id": 7}
                    assert received.local and received.origin == signals.origin
                assert elsewhere._received.statistics().current_buffer_used == 0


async def test_oversized_or_malformed_signals_are_refused_with_a_reason(tmp_path) -> None:
    async with started(f"sqlite:///{tmp_path / 'g.db'}") as signals:
        with pytest.raises(SignalTooLarge, match="at most 7900"):
            await signals.publish("cancel", {"blob": "x" * MAX_PAYLOAD_BYTES})
        with pytest.raises(ValueError, match="channel"):
            await signals.publish("Bad Channel!", {})
        with pytest.raises(TypeError):
            await signals.publish("cancel", {"not json": object()})


@pytest.mark.postgres
async def test_two_brokers_exchange_signals_over_postgresql(postgres_url: str) -> None:
    async with started(postgres_url) as one, started(postgres_url) as two:
        assert one.state == "listening"
        async with one.subscribe("catalog_changed") as at_one, two.subscribe("catalog_changed") as at_two:
            await one.publish("catalog_changed", {"connector": "crm"})
            with _deadline():
                mine = await at_one.get()
                theirs = await at_two.get()
            assert mine.local and mine.payload == {"connector": "crm"}
            assert not theirs.local and theirs.origin == one.origin and theirs.payload == {"connector": "crm"}
            # Nothing echoes back: the publisher's own subscriber got it once, locally.
            await two.publish("catalog_changed", {"connector": "finance"})
            with _deadline():
                assert (await at_one.get()).payload == {"connector": "finance"}
            assert at_one._received.statistics().current_buffer_used == 0
        with pytest.raises(SignalTooLarge):
            await one.publish("cancel", {"blob": "é" * MAX_PAYLOAD_BYTES})


@pytest.mark.postgres
async def test_a_signal_from_another_process_arrives(postgres_url: str) -> None:
    publisher = (
        "import anyio, sys\n"
        "from gateway.signals import open_signals\n"
        "async def main():\n"
        "    signals = open_signals(sys.argv[1])\n"
        "    async with anyio.create_task_group() as tasks:\n"
        "        await tasks.start(signals.run)\n"
        "        await signals.publish('cancel', {'session': 'abc', 'request_id': 'r-1'})\n"
        "        tasks.cancel_scope.cancel()\n"
        "anyio.run(main)\n"
    )
    async with started(postgres_url) as signals, signals.subscribe("cancel") as subscription:
        run = partial(subprocess.run, capture_output=True, text=True, timeout=60)
        result = await anyio.to_thread.run_sync(run, [sys.executable, "-c", publisher, postgres_url])
        assert result.returncode == 0, result.stderr
        with _deadline():
            received = await subscription.get()
    assert received.payload == {"session": "abc", "request_id": "r-1"} and not received.local


@pytest.mark.postgres
async def test_a_terminated_listener_connection_reconnects_and_keeps_delivering(postgres_url: str) -> None:
    async with started(postgres_url) as listener, started(postgres_url) as sender:
        assert isinstance(listener, PostgresSignals)
        async with listener.subscribe("policies_reloaded") as subscription:
            killed_pid = listener.backend_pid
            admin = await asyncpg.connect(postgres_url)
            try:
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", killed_pid)
            finally:
                await admin.close()
            await eventually(lambda: listener.backend_pid not in (None, killed_pid), what="the listener to reconnect")
            assert listener.connections == 2
            await sender.publish("policies_reloaded", {"generation": 2})
            with _deadline():
                received = await subscription.get()
            assert received.payload == {"generation": 2} and not received.local


def _deadline() -> AbstractContextManager[anyio.CancelScope]:
    return anyio.fail_after(DEADLINE)
