"""Counting agents' recent calls (`context.rate`): the sliding windows, the counter, and the database sync.

The windows and the counter run on an injected clock, so a minute passes without waiting for
one. The sync runs two `RateSync`s on one real database (SQLite and PostgreSQL), as two gateway
processes would; `tests/test_gateway_rates.py` does it with real gateways.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select, text, update

from gateway.calls import RateCounts
from gateway.coordination.rate_sync import RATE_COUNTS, RateSync
from gateway.coordination.rate_window import SlidingCount
from gateway.coordination.rates import RateCounter
from gateway.storage.database import Database

START = 1_800_000_000.0  # a whole minute: 30_000_000 * 60


class Clock:
    """Wall-clock seconds that tests move by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the ring -----------------------------------------------------------------------------------


def test_a_sliding_count_keeps_the_last_size_slots_and_clears_what_falls_out() -> None:
    window = SlidingCount(60)
    assert window.add(100) == 1
    assert window.add(100) == 2
    assert window.add(130) == 3
    window.advance(159)  # slot 100 is still the oldest of 100..159
    assert window.total == 3
    window.advance(160)  # 100 falls out, 130 stays
    assert window.total == 1
    assert window.local_counts() == [(130, 1)]
    window.advance(189)
    assert window.total == 1
    window.advance(190)
    assert window.total == 0 and window.local_counts() == []


def test_a_jump_longer_than_the_window_clears_everything_at_once() -> None:
    window = SlidingCount(60)
    for slot in range(0, 60):
        window.add(slot)
    assert window.total == 60
    window.advance(10_000_000)
    assert window.total == 0 and window.expired(10_000_060) and not window.expired(10_000_059)


def test_a_clock_stepping_back_counts_in_the_newest_bucket() -> None:
    window = SlidingCount(60)
    window.add(500)
    assert window.add(490) == 2  # not dropped, not placed before the window's end
    assert window.local_counts() == [(500, 2)]


def test_other_processes_counts_add_up_by_slot_and_slide_out_too() -> None:
    window = SlidingCount(60)
    window.add(200)
    window.set_remote([(150, 2), (200, 3), (100, 7), (205, 1)], 200)  # 100 is out; 205 (clock ahead) at 200
    assert window.total == 1 + 2 + 3 + 1
    assert window.local_counts() == [(200, 1)]  # only this process's own are written
    window.advance(210)
    assert window.total == 1 + 3 + 1  # slot 150 falls out at 210 (the window is 151..210)
    window.set_remote([], 210)
    assert window.total == 1


def test_a_window_needs_a_slot() -> None:
    with pytest.raises(ValueError):
        SlidingCount(0)


# -- the counter --------------------------------------------------------------------------------


def test_the_counter_counts_this_call_per_agent_and_per_tool_over_a_minute_and_an_hour() -> None:
    clock = Clock()
    counter = RateCounter(clock=clock)
    assert counter.count("billing", "finance__pay") == RateCounts(1, 1, 1, 1)
    clock.now += 10
    assert counter.count("billing", "finance__pay") == RateCounts(2, 2, 2, 2)
    assert counter.count("billing", "crm__read") == RateCounts(3, 3, 1, 1)
    assert counter.count("support", "finance__pay") == RateCounts(1, 1, 1, 1)  # another agent: its own counts
    clock.now += 55  # the first call is 65 s old: out of the minute, still in the hour
    assert counter.counts("billing", "finance__pay") == RateCounts(2, 3, 1, 2)
    clock.now += 3600
    assert counter.counts("billing", "finance__pay") == RateCounts(0, 0, 0, 0)


def test_the_minute_is_exact_to_the_second() -> None:
    clock = Clock(START + 0.9)
    counter = RateCounter(clock=clock)
    counter.count("a", "t")
    clock.now = START + 59.99  # second 59 after: the first call's second is still the oldest of sixty
    assert counter.counts("a", "t").tool_minute == 1
    clock.now = START + 60.0
    assert counter.counts("a", "t").tool_minute == 0
    assert counter.counts("a", "t").tool_hour == 1


def test_changes_are_taken_once_and_given_back_when_not_written() -> None:
    clock = Clock()
    counter = RateCounter(clock=clock)
    counter.count("a", "t")
    counter.count("a", "t")
    [change] = counter.changes()
    assert (change.agent, change.tool, change.seconds, change.minutes) == (
        "a",
        "t",
        [(int(START), 2)],
        [(int(START) // 60, 2)],
    )
    assert counter.changes() == []
    counter.unwritten([change])
    assert [c.tool for c in counter.changes()] == ["t"]


def test_idle_tracks_are_forgotten_after_an_hour() -> None:
    clock = Clock()
    counter = RateCounter(clock=clock)
    counter.count("a", "t")
    counter.changes()
    clock.now += 3000
    assert counter.forget_idle() == 0
    clock.now += 600
    assert counter.forget_idle() == 2  # the tool's track and the agent's


# -- the sync between processes ---------------------------------------------------------------


@pytest.mark.anyio
async def test_two_processes_count_each_others_calls_after_a_sync(database: Database) -> None:
    clock = Clock()
    first, second = RateCounter(clock=clock), RateCounter(clock=clock)
    sync_a = RateSync(database, first, replica="a", interval=1, clock=clock)
    sync_b = RateSync(database, second, replica="b", interval=1, clock=clock)
    for _ in range(3):
        first.count("billing", "finance__pay")
    first.count("billing", "crm__read")
    await sync_a.sync()
    await sync_b.sync()
    assert second.counts("billing", "finance__pay") == RateCounts(4, 4, 3, 3)
    assert second.count("billing", "finance__pay") == RateCounts(5, 5, 4, 4)  # its own call on top
    await sync_b.sync()
    await sync_a.sync()
    assert first.counts("billing", "finance__pay") == RateCounts(5, 5, 4, 4)
    # The other's calls leave the window like one's own.
    clock.now += 61
    assert first.counts("billing", "finance__pay") == RateCounts(0, 5, 0, 4)
    # A later write replaces what was read, it is not added twice.
    first.count("billing", "finance__pay")
    await sync_a.sync()
    await sync_b.sync()
    await sync_b.sync()  # nothing new: reads nothing, changes nothing
    assert second.counts("billing", "finance__pay") == RateCounts(1, 6, 1, 5)


@pytest.mark.anyio
async def test_counts_are_shared_only_while_a_policy_reads_the_rate_and_none_are_lost_meanwhile(
    database: Database,
) -> None:
    clock = Clock()
    first, second = RateCounter(clock=clock), RateCounter(clock=clock)
    policies_read_rate = False
    sync_a = RateSync(database, first, replica="a", interval=1, clock=clock, needed=lambda: policies_read_rate)
    sync_b = RateSync(database, second, replica="b", interval=1, clock=clock)
    for _ in range(3):
        first.count("billing", "finance__pay")
    await sync_a.sync()
    await sync_b.sync()
    assert second.counts("billing", "finance__pay") == RateCounts(0, 0, 0, 0)  # nothing written meanwhile
    async with database.engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM rate_counts"))).scalar() == 0
    policies_read_rate = True  # a policy reading context.rate is loaded: what was counted is shared
    await sync_a.sync()
    await sync_b.sync()
    assert second.counts("billing", "finance__pay") == RateCounts(3, 3, 3, 3)


@pytest.mark.anyio
async def test_a_restarted_process_with_the_same_replica_id_counts_its_calls_from_before(
    database: Database,
) -> None:
    clock = Clock()
    before = RateCounter(clock=clock)
    sync = RateSync(database, before, replica="gw-a", interval=1, clock=clock)
    before.count("billing", "finance__pay")
    before.count("billing", "finance__pay")
    await sync.sync()
    other = RateCounter(clock=clock)
    other_sync = RateSync(database, other, replica="gw-b", interval=1, clock=clock)
    await other_sync.restore()
    assert other.counts("billing", "finance__pay").tool_minute == 2

    after = RateCounter(clock=clock)
    restarted = RateSync(database, after, replica="gw-a", interval=1, clock=clock)
    await restarted.restore()
    assert after.count("billing", "finance__pay") == RateCounts(3, 3, 3, 3)
    await restarted.sync()
    await other_sync.sync()  # the version went on from the rows' own: the other reads the new write
    assert other.counts("billing", "finance__pay").tool_minute == 3


@pytest.mark.anyio
async def test_a_failed_write_keeps_the_counts_and_writes_them_next_time(
    database: Database, tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    counter = RateCounter(clock=clock)
    broken = Database(f"sqlite+aiosqlite:///{tmp_path}/missing-dir-is-created/not-migrated.db")
    try:
        failing = RateSync(broken, counter, replica="a", interval=1, clock=clock)
        counter.count("billing", "finance__pay")
        with caplog.at_level(logging.WARNING, logger="gateway.coordination.rates"):
            await failing._guarded(failing.sync, "shared")
        [record] = [r for r in caplog.records if r.name == "gateway.coordination.rates"]
        assert record.getMessage() == (
            "rate counts not shared; calls are counted on this replica alone until the database answers"
        )
        assert counter.counts("billing", "finance__pay").tool_minute == 1  # still counted locally
    finally:
        await broken.close()
    working = RateSync(database, counter, replica="a", interval=1, clock=clock)
    await working.sync()
    reader = RateCounter(clock=clock)
    await RateSync(database, reader, replica="b", interval=1, clock=clock).sync()
    assert reader.counts("billing", "finance__pay").tool_minute == 1


@pytest.mark.anyio
async def test_stale_rows_are_deleted_and_unreadable_ones_ignored(database: Database) -> None:
    clock = Clock()
    writer = RateCounter(clock=clock)
    sync = RateSync(database, writer, replica="a", interval=1, clock=clock)
    writer.count("billing", "finance__pay")
    writer.count("support", "crm__read")
    await sync.sync()
    async with database.session() as session, session.begin():
        await session.execute(update(RATE_COUNTS).where(RATE_COUNTS.c.agent == "support").values(seconds="not json"))
    reader = RateCounter(clock=clock)
    await RateSync(database, reader, replica="b", interval=1, clock=clock).sync()
    assert reader.counts("billing", "finance__pay").tool_minute == 1
    assert reader.counts("support", "crm__read").tool_minute == 0
    clock.now += 3 * 3600
    await sync._delete_stale()
    async with database.session() as session:
        assert (await session.execute(select(RATE_COUNTS.c.agent))).all() == []
