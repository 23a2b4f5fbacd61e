"""Suspensions on real SQLite and PostgreSQL: one in force per agent, approvals cancelled, audit, the in-memory set."""

from __future__ import annotations

import base64
import os
import timeit
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from gateway.approvals import ApprovalState, ApprovalStore, Requirement, Sealer
from gateway.audit import AuditRecorder, Redactor
from gateway.audit.entry import SUSPENSION
from gateway.audit.query import search_events
from gateway.calls import Call, Origin, Target
from gateway.coordination.suspended_agents import SuspendedAgents
from gateway.coordination.suspensions import SuspensionStore
from gateway.errors import AgentAlreadySuspended, AgentNotSuspended, AgentSuspended, InvalidSuspension
from gateway.identity.principal import Principal
from gateway.signals import InProcessSignals
from gateway.storage import Database
from harness import eventually

pytestmark = pytest.mark.anyio

START = datetime(2026, 12, 15, 9, 30, 5, tzinfo=UTC)


def _held_call(agent: str, amount: int) -> Call:
    return Call(
        "tools/call",
        Origin(Principal(agent=agent, roles=("finance",))),
        "bank.transfer",
        {"amount": amount},
        target=Target("bank", "transfer"),
    )


async def _hold(approvals: ApprovalStore, agent: str, amount: int) -> str:
    approval = await approvals.create(
        _held_call(agent, amount),
        Requirement(approvers=("role:treasury",), expires_in=timedelta(minutes=30)),
        policy_ids=("p",),
        reasons=("transfers need treasury",),
        redacted_arguments={"amount": amount},
        policy_version=None,
    )
    return approval.id


async def test_suspending_refuses_with_who_when_and_why_and_cancels_only_that_agents_pending_approvals(
    database: Database,
) -> None:
    recorder = AuditRecorder(database, Redactor(), replica_id="suspensions-test")
    await recorder.start()
    try:
        approvals = ApprovalStore(database, Sealer([("k1", base64.b64encode(os.urandom(32)).decode())]))
        own = [await _hold(approvals, "rogue-bot", amount) for amount in (10, 20)]
        other = await _hold(approvals, "good-bot", 30)
        moments = iter(START + timedelta(minutes=index) for index in range(10))
        store = SuspensionStore(database, recorder=recorder, approvals=approvals, clock=lambda: next(moments))

        done = await store.suspend("rogue-bot", actor="maria", reason="runaway refunds", details={"via": "test"})

        assert sorted(done.cancelled_approvals) == sorted(own)
        for approval_id in own:
            cancelled = await approvals.get(approval_id)
            assert cancelled.state is ApprovalState.CANCELLED
            assert (cancelled.ended_by, cancelled.end_comment) == ("maria", "runaway refunds")
        assert (await approvals.get(other)).state is ApprovalState.PENDING
        refusal = done.suspension.refusal()
        assert isinstance(refusal, AgentSuspended) and refusal.outcome == "denied"
        assert str(refusal) == (
            "denied: agent 'rogue-bot' is suspended by maria at 2026-12-15T09:30:05Z: runaway refunds. "
            "Every request of this agent is refused until an operator resumes it; ask the gateway's operators."
        )

        with pytest.raises(AgentAlreadySuspended) as again:
            await store.suspend("rogue-bot", actor="tom", reason="another reason")
        assert str(again.value) == (
            "agent 'rogue-bot' is already suspended (suspended by maria at 2026-12-15T09:30:05Z: runaway refunds); "
            "resume it first to suspend it for another reason"
        )
        assert [s.agent for s in await store.active()] == ["rogue-bot"]

        resumed = await store.resume("rogue-bot", actor="tom", comment="fixed", details={"via": "test"})
        assert (resumed.resumed_by, resumed.resume_comment, resumed.active) == ("tom", "fixed", False)
        assert await store.active() == []
        with pytest.raises(
            AgentNotSuspended, match="agent 'rogue-bot' is not suspended, so there is nothing to resume"
        ):
            await store.resume("rogue-bot", actor="tom")
        # Suspended again after a resume: a new suspension, the old one kept in the history.
        await store.suspend("rogue-bot", actor="tom", reason="again")
        assert [(s.reason, s.active) for s in await store.history(agent="rogue-bot")] == [
            ("again", True),
            ("runaway refunds", False),
        ]
    finally:
        await recorder.close()
    events = (await search_events(database, SUSPENSION)).events
    assert [(e.data["action"], e.data["agent"], e.data["actor"], e.data["reason"]) for e in reversed(events)] == [
        ("suspended", "rogue-bot", "maria", "runaway refunds"),
        ("resumed", "rogue-bot", "tom", "fixed"),
        ("suspended", "rogue-bot", "tom", "again"),
    ]
    assert sorted(events[-1].data["details"]["cancelled"]) == sorted(own)
    assert events[-1].data["details"]["via"] == "test"


async def test_a_suspension_needs_a_name_and_a_reason(database: Database) -> None:
    store = SuspensionStore(database)
    with pytest.raises(InvalidSuspension, match="give a reason"):
        await store.suspend("bot", actor="maria", reason="  ")
    with pytest.raises(InvalidSuspension, match="name the agent"):
        await store.suspend(" ", actor="maria", reason="why")
    with pytest.raises(InvalidSuspension, match="keep it to 2000"):
        await store.suspend("bot", actor="maria", reason="x" * 2001)
    # An agent never seen is suspended all the same: it is refused from its first request.
    assert (await store.suspend("not-connected-yet", actor="maria", reason="pre-emptive")).suspension.active


async def test_two_suspensions_of_one_agent_at_once_leave_exactly_one_in_force(database: Database) -> None:
    stores = [SuspensionStore(database) for _ in range(4)]
    outcomes: list[str] = []

    async def suspend(store: SuspensionStore, index: int) -> None:
        try:
            await store.suspend("raced-bot", actor=f"admin-{index}", reason="race")
            outcomes.append("suspended")
        except AgentAlreadySuspended:
            outcomes.append("already")

    async with anyio.create_task_group() as group:
        for index, store in enumerate(stores):
            group.start_soon(suspend, store, index)
    assert sorted(outcomes) == ["already"] * 3 + ["suspended"]
    assert len(await stores[0].active()) == 1


async def test_the_in_memory_set_follows_signals_at_once_and_polls_for_what_no_signal_told(database: Database) -> None:
    signals = InProcessSignals()
    signalling = SuspensionStore(database, signals=signals)
    silent = SuspensionStore(database)  # another process on SQLite: its change reaches no signal here
    slow_poll = SuspendedAgents(signalling, signals, poll_interval=1.0)
    fast_poll = SuspendedAgents(silent, None, poll_interval=0.05)
    async with anyio.create_task_group() as group:
        await group.start(slow_poll.follow)
        await group.start(fast_poll.follow)
        assert slow_poll.of("bot") is None

        await signalling.suspend("bot", actor="maria", reason="signalled")
        # Well under the one-second poll: the signal did it.
        found = await eventually(lambda: slow_poll.of("bot"), timeout=0.5, what="the signalled suspension")
        assert found.reason == "signalled"

        await silent.resume("bot", actor="maria")
        await eventually(lambda: fast_poll.of("bot") is None, timeout=2, what="the polled resume")
        group.cancel_scope.cancel()


def test_the_hot_path_check_is_a_dictionary_lookup() -> None:
    """What every request pays: well under a microsecond with a thousand agents suspended."""
    agents = SuspendedAgents()
    agents._by_agent = {f"agent-{index}": None for index in range(1000)}  # type: ignore[misc]
    runs = 200_000
    seconds = min(timeit.repeat(lambda: agents.of("not-suspended"), number=runs, repeat=5)) / runs
    assert seconds < 1e-6, f"{seconds * 1e9:.0f} ns per check"
