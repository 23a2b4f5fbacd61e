"""Held calls through the pipeline: they wait for people, run once when approved, and never twice.

Real Cedar approval policies, a real SQLite approval store and audit log, an in-memory backend;
people decide through the store, as the CLI does.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

from gateway.approvals import ApprovalState, ApprovalStore, Sealer
from gateway.calls import Origin
from gateway.errors import ApprovalPending, ApprovalRefused, ApprovalsNotConfigured, PolicyDenied, SelfApproval
from gateway.holding import APPROVAL_NOTE, NO_WAIT_META_KEY
from gateway.policy import decisions as decisions_module
from gateway.policy.context import call_context
from gateway.settings.approvals import ApprovalSettings, SealingKey
from harness import eventually
from pipeline_world import SALES, World, pipeline_world

pytestmark = pytest.mark.anyio

#: Deleting a test record is allowed by the access policies (see pipeline_world) and held here,
#: unless the record is a scratch one.
HOLDS = """
@id("deletes-need-a-manager")
@approvers("role:crm-managers")
@reason("Deleting a record needs a CRM manager.")
@expires("PT10M")
permit (principal, action == Action::"crm__delete", resource);

@id("scratch-records-are-free")
forbid (principal, action == Action::"crm__delete", resource) when { context.input.id like "test-scratch-*" };
"""

MANAGER = ("manager-mia", ("crm-managers",))
NO_WAIT = {NO_WAIT_META_KEY: True}


def settings(**changes: Any) -> ApprovalSettings:
    key = SealingKey(id="k1", key=SecretStr(base64.b64encode(os.urandom(32)).decode()))
    values: dict[str, Any] = {"sealing_keys": (key,), "max_wait": 5.0, "poll_interval": 0.02, **changes}
    return ApprovalSettings(**values)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with pipeline_world(tmp_path, approval_policies=HOLDS, approvals=settings()) as world:
        yield world


async def pending_id(world: World) -> str:
    assert world.approvals is not None
    page = await world.approvals.list(state=ApprovalState.PENDING)
    assert len(page.approvals) == 1
    return page.approvals[0].id


async def test_a_held_call_waits_and_runs_once_the_approver_says_yes(world: World) -> None:
    assert world.approvals is not None
    progress: list[str | None] = []
    result: dict[str, Any] = {}

    waiting = anyio.Event()

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(message)
        waiting.set()

    async def call() -> None:
        call = world.call(SALES, "crm__delete", {"id": "test-7"})
        result.update(await world.pipeline.call_tool(call, on_progress=on_progress))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call)
        with anyio.fail_after(5):
            await waiting.wait()
        assert world.crm.calls == []  # nothing runs while it waits
        user, roles = MANAGER
        await world.approvals.vote(await_id := await pending_id(world), user=user, roles=roles, approve=True)

    assert result["content"][0]["text"] == '{"id": "test-7"}'
    assert len(world.crm.calls) == 1
    assert progress[0] is not None and "waiting for approval by role:crm-managers" in progress[0]
    assert (await world.approvals.get(await_id)).state is ApprovalState.SUCCEEDED
    [entry] = await world.entries(1)
    assert (entry.decision, entry.outcome_name) == ("allow", "ok")
    assert f"approved by manager-mia (approval {await_id})" in entry.call["reason"]


async def _held_then_decided(world: World, decide: Any, *, within: float) -> dict[str, Any]:
    """Hold a delete, have `decide(approval_id)` approve it once the call waits, and return what the call
    answered; fail unless it answered within `within` seconds of the decision."""
    result: dict[str, Any] = {}
    waiting, answered = anyio.Event(), anyio.Event()

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        waiting.set()

    async def call() -> None:
        result.update(
            await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-5"}), on_progress=on_progress)
        )
        answered.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call)
        with anyio.fail_after(5):
            await waiting.wait()
        await decide(await pending_id(world))
        with anyio.fail_after(within):
            await answered.wait()
    return result


async def test_a_decision_made_in_this_process_wakes_the_waiting_call_at_once(tmp_path: Path) -> None:
    # Looks 30 s apart: only the store's change, heard at once, can let the call go on in time.
    async with pipeline_world(tmp_path, approval_policies=HOLDS, approvals=settings(poll_interval=30.0)) as world:
        assert world.approvals is not None
        store = world.approvals

        async def approve(approval_id: str) -> None:
            await store.vote(approval_id, user=MANAGER[0], roles=MANAGER[1], approve=True)

        result = await _held_then_decided(world, approve, within=3)
    assert result["content"][0]["text"] == '{"id": "test-5"}' and len(world.crm.calls) == 1


async def test_a_decision_whose_signal_was_lost_is_found_by_the_next_look(tmp_path: Path) -> None:
    # Another process's store on the same database: its change rings nobody here, as a lost signal would.
    async with pipeline_world(tmp_path, approval_policies=HOLDS, approvals=settings(poll_interval=0.3)) as world:
        elsewhere = ApprovalStore(world.database, Sealer([("other", base64.b64encode(os.urandom(32)).decode())]))
        rung: list[str] = []
        elsewhere.listen(lambda approval: rung.append(approval.id))

        async def approve(approval_id: str) -> None:
            await elsewhere.vote(approval_id, user=MANAGER[0], roles=MANAGER[1], approve=True)

        result = await _held_then_decided(world, approve, within=5)
    assert result["content"][0]["text"] == '{"id": "test-5"}' and len(world.crm.calls) == 1
    assert rung  # the decision was committed where this gateway's waiters cannot hear it


async def test_without_waiting_the_agent_hears_pending_then_collects_the_one_run(world: World) -> None:
    assert world.approvals is not None
    with pytest.raises(ApprovalPending, match="Repeat the identical call") as pending:
        await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-8"}, NO_WAIT))
    approval_id = await pending_id(world)
    assert approval_id in str(pending.value) and "role:crm-managers" in str(pending.value)
    assert (await world.approvals.get(approval_id)).redacted_arguments == {"id": "test-8"}
    with pytest.raises(ApprovalPending):  # the same call again, still undecided: the same approval
        await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-8"}, NO_WAIT))
    assert len((await world.approvals.list()).approvals) == 1

    await world.approvals.vote(approval_id, user=MANAGER[0], roles=MANAGER[1], approve=True)
    first = await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-8"}, NO_WAIT))
    again = await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-8"}, NO_WAIT))

    assert first == again and first["content"][0]["text"] == '{"id": "test-8"}'
    assert len(world.crm.calls) == 1  # never twice
    entries = await world.entries(4)
    assert [(e.decision, e.outcome_name) for e in entries] == [
        ("hold", "held"),
        ("hold", "held"),
        ("allow", "ok"),
        ("hold", "ok"),
    ]


async def test_a_denial_names_who_denied_and_why(world: World) -> None:
    assert world.approvals is not None
    with pytest.raises(ApprovalPending):
        await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-9"}, NO_WAIT))
    await world.approvals.vote(
        await pending_id(world), user=MANAGER[0], roles=MANAGER[1], approve=False, comment="keep it for the audit"
    )
    with pytest.raises(ApprovalRefused, match=r"denied by manager-mia .*: keep it for the audit"):
        await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-9"}, NO_WAIT))
    assert world.crm.calls == []


async def test_a_cancellation_names_who_cancelled_when_and_why(world: World) -> None:
    assert world.approvals is not None
    with pytest.raises(ApprovalPending):
        await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-16"}, NO_WAIT))
    cancelled = await world.approvals.cancel(
        await pending_id(world), actor="manager-mia", comment="the record is kept for the audit"
    )
    assert cancelled.finished_at is not None
    at = cancelled.finished_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
    with pytest.raises(ApprovalRefused) as refused:
        await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-16"}, NO_WAIT))
    assert str(refused.value) == (
        f"'crm__delete' was not run: its approval {cancelled.id} was cancelled by manager-mia at {at}: "
        "the record is kept for the audit."
    )
    assert world.crm.calls == []


async def test_an_admins_denial_names_the_admin_and_what_they_said(world: World) -> None:
    assert world.approvals is not None
    with pytest.raises(ApprovalPending):
        await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-17"}, NO_WAIT))
    await world.approvals.override(
        await pending_id(world), actor="admin", approve=False, reason="managers away", comment="not while audited"
    )
    with pytest.raises(ApprovalRefused, match=r"was denied by admin at .*: not while audited\.$"):
        await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-17"}, NO_WAIT))


async def test_the_agent_cannot_approve_its_own_call_and_an_exempt_call_is_not_held(world: World) -> None:
    assert world.approvals is not None
    with pytest.raises(ApprovalPending):
        await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-10"}, NO_WAIT))
    with pytest.raises(SelfApproval, match="cannot decide it"):
        await world.approvals.vote(await pending_id(world), user=SALES.agent, roles=("crm-managers",), approve=True)

    exempt = await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-scratch-1"}))
    assert exempt["content"][0]["text"] == '{"id": "test-scratch-1"}'


async def test_an_expired_approval_says_so_and_nothing_runs(tmp_path: Path) -> None:
    expiring = HOLDS.replace('@expires("PT10M")', '@expires("PT1S")')
    async with pipeline_world(tmp_path, approval_policies=expiring, approvals=settings(max_wait=3.0)) as world:
        with pytest.raises(ApprovalRefused, match="expired"):
            await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-11"}))
        assert world.crm.calls == []


async def test_an_approved_call_repeated_too_late_hears_it_expired_unrun(tmp_path: Path) -> None:
    async with pipeline_world(tmp_path, approval_policies=HOLDS, approvals=settings(collect_within=0.5)) as world:
        assert world.approvals is not None
        with pytest.raises(ApprovalPending):
            await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-15"}, NO_WAIT))
        approval_id = await pending_id(world)
        approved = await world.approvals.vote(approval_id, user=MANAGER[0], roles=MANAGER[1], approve=True)
        assert approved.decided_at is not None
        window_ends = approved.decided_at + timedelta(seconds=0.5)
        await eventually(lambda: datetime.now(UTC) > window_ends, timeout=5, what="the collection window to pass")

        with pytest.raises(ApprovalRefused, match=r"approved at .* but not collected in time, so it expired unrun"):
            await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-15"}, NO_WAIT))
        assert world.crm.calls == []  # approved, but never run once its window passed
        expired = await world.approvals.get(approval_id)
        assert expired.state is ApprovalState.EXPIRED and expired.sealed_arguments is None


async def test_without_a_sealing_key_a_held_call_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    async with pipeline_world(tmp_path, approval_policies=HOLDS) as world:
        with pytest.raises(ApprovalsNotConfigured, match="nothing ran"):
            await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-12"}))
        assert world.crm.calls == []
        [entry] = await world.entries(1)
        assert (entry.decision, entry.outcome_name) == ("hold", "refused")
        assert entry.call["policy_ids"] == ["deletes-need-a-manager"]


async def test_access_policies_are_asked_again_when_the_approved_call_runs(tmp_path: Path) -> None:
    # The access policy allows a delete only while no approval is known, so the approved run is refused.
    grudging = """
@id("list") permit (principal is Agent, action == Action::"list_tools", resource is Server);
@id("delete-unapproved-only")
permit (principal in Role::"sales", action == Action::"crm__delete", resource)
unless { context has approval && context.approval.granted };
"""
    async with pipeline_world(tmp_path, grudging, approval_policies=HOLDS, approvals=settings()) as world:
        assert world.approvals is not None
        with pytest.raises(ApprovalPending):
            await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-13"}, NO_WAIT))
        await world.approvals.vote(await pending_id(world), user=MANAGER[0], roles=MANAGER[1], approve=True)
        with pytest.raises(PolicyDenied, match="denied after approval"):
            await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-13"}, NO_WAIT))
        assert world.crm.calls == []


async def test_repeats_racing_after_the_approval_run_the_call_once(world: World) -> None:
    assert world.approvals is not None
    with pytest.raises(ApprovalPending):
        await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-14"}, NO_WAIT))
    await world.approvals.vote(await pending_id(world), user=MANAGER[0], roles=MANAGER[1], approve=True)
    results: list[dict[str, Any]] = []

    async def repeat() -> None:
        results.append(await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-14"})))

    async with anyio.create_task_group() as tasks:
        for _ in range(4):
            tasks.start_soon(repeat)

    assert len(world.crm.calls) == 1
    assert len(results) == 4 and all(r == results[0] for r in results)


async def test_a_tool_whose_calls_may_be_held_says_so_in_the_listing(tmp_path: Path) -> None:
    async with pipeline_world(tmp_path, approval_policies=HOLDS, approvals=settings()) as world:
        listed = {t["name"]: t for t in (await world.pipeline.list_tools(Origin(SALES))).tools}
    async with pipeline_world(
        tmp_path / "plain", approval_policies=HOLDS, approvals=settings(describe_in_listing=False)
    ) as world:
        plain = {t["name"]: t for t in (await world.pipeline.list_tools(Origin(SALES))).tools}

    assert listed["crm__delete"]["description"].endswith(APPROVAL_NOTE.strip())
    assert "Requires approval" not in listed["crm__search"].get("description", "")
    assert "Requires approval" not in plain["crm__delete"].get("description", "")


async def test_the_hold_stage_evaluates_the_request_the_access_decision_built(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str | None] = []

    def counted(input_type: Any, call: Any, **options: Any) -> Any:
        built.append(call.name)
        return call_context(input_type, call, **options)

    monkeypatch.setattr(decisions_module, "call_context", counted)

    exempt = await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-scratch-2"}))
    with pytest.raises(ApprovalPending):
        await world.pipeline.call_tool(world.call(SALES, "crm__delete", {"id": "test-15"}, NO_WAIT))

    assert exempt["content"][0]["text"] == '{"id": "test-scratch-2"}'
    assert built == ["crm__delete", "crm__delete"]  # once a call: the approval policies reused it
