"""The approval store on real SQLite and PostgreSQL: moves, votes, races between replicas, upkeep, audit."""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import text

from gateway.approvals import ApprovalState, ApprovalStore, Requirement, Sealer, arguments_digest
from gateway.audit import AuditRecorder, Redactor, verify
from gateway.calls import Call, Origin, Target
from gateway.errors import (
    ApprovalConflict,
    InvalidApprovalQuery,
    InvalidApprovalRequest,
    NotAnApprover,
    SelfApproval,
    UnknownApproval,
)
from gateway.identity.principal import Principal
from gateway.storage import Database

pytestmark = pytest.mark.anyio

AGENT = Principal(agent="billing-bot", roles=("finance",), user="alice@example.com")
SECRET = "s3cr3t-wire-transfer-token"
ARGUMENTS = {"account": "DE00 1234", "amount": 1250.5, "token": SECRET}
START = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
KEY = base64.b64encode(os.urandom(32)).decode()


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _call(arguments: object = ARGUMENTS, principal: Principal = AGENT) -> Call:
    return Call(
        "tools/call",
        Origin(principal, session_id="sess-1"),
        "bank.transfer",
        arguments,
        reasoning="pay invoice 42",
        workflow="wf-7",
        target=Target("bank", "transfer"),
    )


def _store(database: Database, clock: Clock | None = None, **options: object) -> ApprovalStore:
    return ApprovalStore(database, Sealer([("k1", KEY)]), clock=clock or Clock(), **options)  # type: ignore[arg-type]


async def _create(store: ApprovalStore, requirement: Requirement | None = None, arguments: object = ARGUMENTS):
    return await store.create(
        _call(arguments),
        requirement or Requirement(approvers=("role:treasury", "user:carol"), expires_in=timedelta(minutes=30)),
        policy_ids=("p-transfers",),
        reasons=("transfers need treasury",),
        redacted_arguments={"account": "DE00 1234", "amount": 1250.5, "token": "[REDACTED]"},
        policy_version="v12",
    )


async def _raw_row(database: Database, approval_id: str) -> dict:
    async with database.engine.connect() as connection:
        row = (await connection.execute(text("SELECT * FROM approvals WHERE id = :id"), {"id": approval_id})).mappings()
        return dict(row.one())


async def test_create_get_and_list_in_pages(database):
    clock = Clock()
    store = _store(database, clock)
    made = []
    for index in range(5):
        clock.now = START + timedelta(seconds=index)
        made.append(await _create(store, arguments={**ARGUMENTS, "n": index}))
    first = made[0]
    assert first.state is ApprovalState.PENDING and first.version == 1
    assert first.agent == "billing-bot" and first.user == "alice@example.com" and first.roles == ("finance",)
    assert (first.connector, first.original_tool, first.tool) == ("bank", "transfer", "bank.transfer")
    assert first.expires_at == START + timedelta(minutes=30)
    assert first.arguments_digest == arguments_digest("bank.transfer", {**ARGUMENTS, "n": 0})
    assert await store.get(first.id) == first

    page = await store.list(limit=2)
    assert [a.id for a in page.approvals] == [made[4].id, made[3].id]
    page = await store.list(limit=2, cursor=page.next_cursor)
    assert [a.id for a in page.approvals] == [made[2].id, made[1].id]
    page = await store.list(limit=2, cursor=page.next_cursor)
    assert [a.id for a in page.approvals] == [made[0].id] and page.next_cursor is None
    assert (await store.list(state=ApprovalState.APPROVED)).approvals == ()
    with pytest.raises(UnknownApproval):
        await store.get("nope")
    with pytest.raises(InvalidApprovalQuery):
        await store.list(cursor="garbage!")


async def test_the_stored_row_holds_no_plaintext_of_the_exact_arguments(database):
    store = _store(database)
    approval = await _create(store)
    row = await _raw_row(database, approval.id)
    assert SECRET.encode() not in bytes(row["sealed_arguments"])
    assert SECRET not in repr(row)


async def test_quorum_counts_distinct_people_and_the_call_runs_once(database):
    store = _store(database)
    approval = await _create(store, Requirement(approvers=("role:treasury",), quorum=2))
    once = await store.vote(approval.id, user="bob", roles=("treasury",), approve=True, comment="ok")
    again = await store.vote(approval.id, user="bob", roles=("treasury",), approve=True)
    assert once.state is again.state is ApprovalState.PENDING and again.version == once.version
    approved = await store.vote(approval.id, user="dave", roles=("treasury",), approve=True)
    assert approved.state is ApprovalState.APPROVED and approved.decided_at is not None
    assert [(v.user, v.approve, v.comment) for v in await store.votes(approval.id)] == [
        ("bob", True, "ok"),
        ("dave", True, None),
    ]
    running, arguments = await store.begin_execution(approval.id, executor="gw-1")
    assert arguments == ARGUMENTS and running.state is ApprovalState.EXECUTING
    assert (await _raw_row(database, approval.id))["sealed_arguments"] is None
    with pytest.raises(ApprovalConflict, match="executing"):
        await store.begin_execution(approval.id)
    done = await store.finish(approval.id, succeeded=True, result=b'{"ok":true}')
    assert done.state is ApprovalState.SUCCEEDED and done.result == b'{"ok":true}' and not done.result_truncated
    assert done.sealed_arguments is None
    with pytest.raises(ApprovalConflict, match="succeeded"):
        await store.vote(approval.id, user="erin", roles=("treasury",), approve=False)


async def test_the_agent_and_its_user_cannot_decide_their_own_call(database):
    store = _store(database)
    approval = await _create(store, Requirement(approvers=("role:finance", "user:alice@example.com")))
    with pytest.raises(SelfApproval):
        await store.vote(approval.id, user="alice@example.com", roles=("finance",), approve=True)
    with pytest.raises(SelfApproval):
        await store.vote(approval.id, user="billing-bot", roles=("finance",), approve=True)
    assert (await store.get(approval.id)).state is ApprovalState.PENDING
    assert await store.votes(approval.id) == ()


async def test_a_comment_the_database_cannot_hold_is_refused_and_the_approval_stays_pending(database):
    store = _store(database)
    approval = await _create(store)
    with pytest.raises(InvalidApprovalRequest, match="NUL character"):
        await store.vote(approval.id, user="carol", roles=(), approve=False, comment="no\x00")
    with pytest.raises(InvalidApprovalRequest, match="NUL character"):
        await store.cancel(approval.id, actor="carol", comment="stop\x00")
    with pytest.raises(InvalidApprovalRequest, match="the reason contains a NUL"):
        await store.override(approval.id, actor="root", approve=True, reason="urgent\x00")
    assert (await store.get(approval.id)).state is ApprovalState.PENDING
    assert await store.votes(approval.id) == ()


async def test_only_the_named_approvers_may_vote(database):
    store = _store(database)
    approval = await _create(store)
    with pytest.raises(NotAnApprover, match="role:treasury"):
        await store.vote(approval.id, user="mallory", roles=("finance",), approve=True)
    assert (await store.vote(approval.id, user="carol", roles=(), approve=True)).state is ApprovalState.APPROVED


async def test_one_denial_by_an_approver_ends_it_and_drops_the_arguments(database):
    store = _store(database)
    approval = await _create(store, Requirement(approvers=("role:treasury",), quorum=2))
    await store.vote(approval.id, user="bob", roles=("treasury",), approve=True)
    denied = await store.vote(approval.id, user="dave", roles=("treasury",), approve=False, comment="not budgeted")
    assert denied.state is ApprovalState.DENIED and denied.sealed_arguments is None
    assert (await _raw_row(database, approval.id))["sealed_arguments"] is None
    with pytest.raises(ApprovalConflict, match="denied") as raised:
        await store.vote(approval.id, user="erin", roles=("treasury",), approve=True)
    assert raised.value.state == "denied"
    with pytest.raises(ApprovalConflict):
        await store.begin_execution(approval.id)


async def test_expiry_ends_pending_calls_and_refuses_late_votes(database):
    clock = Clock()
    store = _store(database, clock)
    soon = await _create(store, Requirement(approvers=("user:carol",), expires_in=timedelta(minutes=5)))
    later = await _create(
        store, Requirement(approvers=("user:carol",), expires_in=timedelta(hours=5)), arguments={**ARGUMENTS, "n": 2}
    )
    assert await store.expire_due(START + timedelta(minutes=4)) == []
    expired = await store.expire_due(START + timedelta(minutes=5))
    assert [a.id for a in expired] == [soon.id] and expired[0].state is ApprovalState.EXPIRED
    assert (await _raw_row(database, soon.id))["sealed_arguments"] is None
    clock.now = START + timedelta(hours=6)
    with pytest.raises(ApprovalConflict, match="expired"):
        await store.vote(later.id, user="carol", roles=(), approve=True)
    assert (await store.get(later.id)).state is ApprovalState.EXPIRED


async def test_an_approved_call_nobody_collects_expires_unrun_and_drops_its_arguments(database):
    clock = Clock()
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    await recorder.start()
    try:
        store = _store(database, clock, recorder=recorder, collect_within=timedelta(hours=1))
        approval = await _create(store, Requirement(approvers=("user:carol",), expires_in=timedelta(minutes=30)))
        clock.now = START + timedelta(minutes=20)
        await store.vote(approval.id, user="carol", roles=(), approve=True)
        assert await store.expire_due(START + timedelta(minutes=79)) == []  # still in its collection window
        expired = await store.expire_due(START + timedelta(minutes=80))
    finally:
        await recorder.close()
    assert [(a.id, a.state) for a in expired] == [(approval.id, ApprovalState.EXPIRED)]
    assert (await _raw_row(database, approval.id))["sealed_arguments"] is None
    with pytest.raises(ApprovalConflict, match="expired"):
        await store.begin_execution(approval.id)
    # A late repeat hears of it, for as long again; after that it is held anew.
    digest = arguments_digest("bank.transfer", ARGUMENTS)
    late = START + timedelta(minutes=139)
    assert (await store.find_repeat("billing-bot", "bank.transfer", digest, refused_since=late)).id == approval.id
    later = START + timedelta(minutes=141)
    assert await store.find_repeat("billing-bot", "bank.transfer", digest, refused_since=later) is None
    async with database.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT content FROM audit_events WHERE kind = 'approval'"))).all()
    last = orjson.loads(rows[-1].content)["data"]
    assert (last["action"], last["previous_state"], last["state"], last["actor"]) == (
        "expired",
        "approved",
        "expired",
        "gateway",
    )
    assert "not collected within" in last["comment"]


async def test_an_uncollected_call_repeated_before_any_sweep_expires_instead_of_running(database):
    clock = Clock()
    store = _store(database, clock, collect_within=timedelta(minutes=10))
    approval = await _create(store, Requirement(approvers=("user:carol",)))
    await store.vote(approval.id, user="carol", roles=(), approve=True)
    clock.now = START + timedelta(minutes=10)
    with pytest.raises(ApprovalConflict, match="expired") as refused:
        await store.begin_execution(approval.id)
    assert refused.value.state == ApprovalState.EXPIRED
    assert (await store.get(approval.id)).sealed_arguments is None


async def test_an_identical_call_cannot_be_held_twice_while_its_approval_is_open(database):
    store = _store(database, Clock())
    first = await _create(store)
    with pytest.raises(ApprovalConflict, match="already held"):
        await _create(store)
    await store.cancel(first.id, actor="carol", comment="asked twice")
    assert (await _create(store)).id != first.id  # once it is closed, asking again makes a new one


async def test_escalation_is_due_once_and_marked_by_one_writer(database):
    clock = Clock()
    store = _store(database, clock)
    requirement = Requirement(
        approvers=("user:carol",), escalate_after=timedelta(minutes=10), escalate_to=("role:cfo",)
    )
    approval = await _create(store, requirement)
    assert await store.due_for_escalation(START + timedelta(minutes=9)) == []
    due = await store.due_for_escalation(START + timedelta(minutes=10))
    assert [a.id for a in due] == [approval.id]
    marked = await store.mark_escalated(approval.id)
    assert marked.escalated_at is not None and marked.state is ApprovalState.PENDING
    with pytest.raises(ApprovalConflict, match="already escalated"):
        await store.mark_escalated(approval.id)
    assert await store.due_for_escalation(START + timedelta(minutes=11)) == []


async def test_crash_recovery_marks_running_calls_unknown_and_never_reruns_them(database):
    store = _store(database)
    mine = await _create(store, Requirement(approvers=("user:carol",)))
    theirs = await _create(store, Requirement(approvers=("user:carol",)), arguments={"x": 1})
    for approval in (mine, theirs):
        await store.vote(approval.id, user="carol", roles=(), approve=True)
    await store.begin_execution(mine.id, executor="gw-1")
    await store.begin_execution(theirs.id, executor="gw-2")
    recovered = await store.recover_after_crash(executor="gw-1")
    assert [(a.id, a.state) for a in recovered] == [(mine.id, ApprovalState.UNKNOWN)]
    assert (await store.get(theirs.id)).state is ApprovalState.EXECUTING
    assert [a.id for a in await store.recover_after_crash()] == [theirs.id]
    with pytest.raises(ApprovalConflict):
        await store.finish(mine.id, succeeded=True, result=b"late")
    with pytest.raises(ApprovalConflict):
        await store.begin_execution(mine.id)


async def test_results_are_bounded_and_flagged(database):
    store = _store(database, max_result_bytes=8)
    approval = await _create(store, Requirement(approvers=("user:carol",)))
    await store.vote(approval.id, user="carol", roles=(), approve=True)
    await store.begin_execution(approval.id)
    done = await store.finish(approval.id, succeeded=False, result=b"0123456789abcdef")
    assert done.state is ApprovalState.FAILED and done.result == b"01234567" and done.result_truncated


async def test_cancel_ends_a_pending_call_only(database):
    store = _store(database)
    approval = await _create(store)
    cancelled = await store.cancel(approval.id, actor="billing-bot", comment="no longer needed")
    assert cancelled.state is ApprovalState.CANCELLED and cancelled.sealed_arguments is None
    kept = await store.get(approval.id)
    assert (kept.ended_by, kept.end_comment, kept.finished_at) == ("billing-bot", "no longer needed", START)
    with pytest.raises(ApprovalConflict, match="cancelled"):
        await store.cancel(approval.id, actor="billing-bot")


async def test_find_repeat_finds_the_open_or_ran_call_not_the_ended_one(database):
    store = _store(database)
    digest = arguments_digest("bank.transfer", ARGUMENTS)
    assert await store.find_repeat("billing-bot", "bank.transfer", digest) is None
    first = await _create(store)
    await store.cancel(first.id, actor="billing-bot")
    assert await store.find_repeat("billing-bot", "bank.transfer", digest) is None
    second = await _create(store, arguments={"token": SECRET, "amount": 1250.50, "account": "DE00 1234"})
    assert (await store.find_repeat("billing-bot", "bank.transfer", digest)).id == second.id
    assert await store.find_repeat("other-bot", "bank.transfer", digest) is None


async def test_two_replicas_racing_to_decide_exactly_one_wins(database_url):
    replicas = [Database(database_url), Database(database_url)]
    await replicas[0].migrate()
    try:
        stores = [_store(replica) for replica in replicas]
        for index in range(5):
            approval = await _create(stores[0], Requirement(approvers=("role:treasury",)), {**ARGUMENTS, "n": index})

            async def decide(store: ApprovalStore, user: str, approve: bool, approval_id: str = approval.id) -> object:
                try:
                    return await store.vote(approval_id, user=user, roles=("treasury",), approve=approve)
                except ApprovalConflict as conflict:
                    return conflict

            outcomes = await asyncio.gather(decide(stores[0], "bob", True), decide(stores[1], "dave", False))
            conflicts = [o for o in outcomes if isinstance(o, ApprovalConflict)]
            winners = [o for o in outcomes if not isinstance(o, ApprovalConflict)]
            assert len(conflicts) == 1 and len(winners) == 1
            final = await stores[1].get(approval.id)
            assert final.state is winners[0].state and final.version == 2  # type: ignore[attr-defined]
            assert len(await stores[0].votes(approval.id)) == 1

            # Two replicas starting the same call: one runs it, the other is told.
            if final.state is ApprovalState.APPROVED:
                started = await asyncio.gather(
                    *(store.begin_execution(approval.id) for store in stores), return_exceptions=True
                )
                assert sum(isinstance(result, ApprovalConflict) for result in started) == 1
    finally:
        for replica in replicas:
            await replica.close()


async def test_votes_racing_for_a_quorum_of_two_both_count(database_url):
    replicas = [Database(database_url), Database(database_url)]
    await replicas[0].migrate()
    try:
        stores = [_store(replica) for replica in replicas]
        approval = await _create(stores[0], Requirement(approvers=("role:treasury",), quorum=2))
        await asyncio.gather(
            stores[0].vote(approval.id, user="bob", roles=("treasury",), approve=True),
            stores[1].vote(approval.id, user="dave", roles=("treasury",), approve=True),
        )
        assert (await stores[0].get(approval.id)).state is ApprovalState.APPROVED
    finally:
        for replica in replicas:
            await replica.close()


async def test_every_change_is_an_audit_event_in_a_chain_that_verifies(database):
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    await recorder.start()
    try:
        store = _store(database, recorder=recorder)
        approval = await _create(store, Requirement(approvers=("role:treasury",), quorum=1))
        await store.vote(approval.id, user="bob", roles=("treasury",), approve=True, comment="checked invoice 42")
        await store.begin_execution(approval.id, executor="gw-1")
        await store.finish(approval.id, succeeded=True, result=b"done")
        denied = await _create(store, arguments={"x": 2})
        await store.vote(denied.id, user="carol", roles=(), approve=False, comment="no")
    finally:
        await recorder.close()
    async with database.engine.connect() as connection:
        rows = (
            await connection.execute(text("SELECT kind, agent, tool, content FROM audit_events ORDER BY seq"))
        ).all()
    events = [orjson.loads(row.content)["data"] for row in rows if row.kind == "approval"]
    assert [(e["approval_id"], e["action"], e["previous_state"], e["state"], e["actor"]) for e in events] == [
        (approval.id, "created", None, "pending", "billing-bot"),
        (approval.id, "vote", "pending", "approved", "bob"),
        (approval.id, "approved", "pending", "approved", "bob"),
        (approval.id, "executing", "approved", "executing", "gw-1"),
        (approval.id, "succeeded", "executing", "succeeded", "gw-1"),
        (denied.id, "created", None, "pending", "billing-bot"),
        (denied.id, "vote", "pending", "denied", "carol"),
        (denied.id, "denied", "pending", "denied", "carol"),
    ]
    assert events[1]["comment"] == "checked invoice 42"
    assert all(SECRET not in row.content for row in rows)
    assert {(row.agent, row.tool) for row in rows if row.kind == "approval"} == {("billing-bot", "bank.transfer")}
    assert (await verify(database)).ok
