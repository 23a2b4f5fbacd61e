"""The workflow store on real SQLite and PostgreSQL: steps read from the audit log, notes, shared results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.audit import AuditRecorder, Redactor
from gateway.calls import Call, Origin, Target
from gateway.coordination.sharing import result_summary
from gateway.coordination.workflows import WorkflowStore
from gateway.identity.principal import Principal
from gateway.storage import Database

pytestmark = pytest.mark.anyio

QUOTES = Principal(agent="quotes-bot", roles=("buyer",))
COMPLIANCE = Principal(agent="compliance-bot", roles=("compliance",), user="dana")


def _call(principal: Principal, tool: str, workflow: str | None) -> Call:
    connector, _, original = tool.partition("__")
    return Call("tools/call", Origin(principal), tool, {}, workflow=workflow, target=Target(connector, original))


async def _step(
    recorder: AuditRecorder, principal: Principal, tool: str, workflow: str | None, *, decision: str, outcome: str
) -> str:
    handle = await recorder.record_call(
        _call(principal, tool, workflow), decision=decision, reason=f"{tool} {decision}"
    )
    await recorder.record_outcome(handle, outcome=outcome)
    return handle.call_id


async def test_state_timeline_and_listing(database: Database) -> None:
    store = WorkflowStore(database)
    async with AuditRecorder(database, Redactor(), replica_id="gw-1") as recorder:
        await _step(recorder, QUOTES, "erp__create_purchase_order", "wf-1", decision="deny", outcome="denied")
        check = await _step(recorder, COMPLIANCE, "compliance__check_vendor", "wf-1", decision="allow", outcome="ok")
        await _step(recorder, COMPLIANCE, "compliance__flag", "wf-1", decision="allow", outcome="tool_error")
        await _step(recorder, QUOTES, "quotes__get", "wf-2", decision="allow", outcome="ok")
        await _step(recorder, QUOTES, "quotes__get", None, decision="allow", outcome="ok")

    assert (await store.state(None)).completed == frozenset()
    state = await store.state("wf-1")
    assert state.completed == {"compliance__check_vendor"}  # the denied and the failed calls do not count
    assert state.agents == {"quotes-bot", "compliance-bot"}
    assert (await store.state("wf-none")).agents == frozenset()

    shared = result_summary({"content": [{"type": "text", "text": "ok\x00"}]}, Redactor())
    assert shared == "ok\ufffd"  # a NUL, which PostgreSQL cannot store, does not fail the call that shares it
    await store.share_result(
        "wf-1", call_id=check, tool="compliance__check_vendor", agent="compliance-bot", summary=shared
    )
    note = await store.add_note("wf-1", agent="compliance-bot", user="dana", text="vendor 42 passed")
    timeline = await store.timeline("wf-1")
    assert [step.tool for step in timeline.steps] == [
        "erp__create_purchase_order",
        "compliance__check_vendor",
        "compliance__flag",
    ]
    assert [step.outcome for step in timeline.steps] == ["denied", "ok", "tool_error"]
    assert timeline.steps[0].reason == "erp__create_purchase_order deny"
    assert timeline.steps[1].summary == "ok\ufffd" and timeline.steps[0].summary is None
    assert timeline.steps[1].user == "dana"
    assert timeline.notes == (note,) and not timeline.truncated and timeline.total_steps == 3
    assert timeline.agents == ("quotes-bot", "compliance-bot")

    shortened = await store.timeline("wf-1", limit=2)
    assert shortened.truncated and shortened.total_steps == 3
    assert [step.tool for step in shortened.steps] == ["compliance__check_vendor", "compliance__flag"]

    listed = await store.recent()
    assert [summary.id for summary in listed] == ["wf-2", "wf-1"]
    assert listed[1].steps == 3 and listed[1].agents == ("compliance-bot", "quotes-bot")
    assert [summary.id for summary in await store.recent(agent="compliance-bot")] == ["wf-1"]
    assert await store.recent(since=datetime.now(UTC) + timedelta(hours=1)) == []
    assert [summary.id for summary in await store.recent(limit=1)] == ["wf-2"]
    assert (await store.timeline("wf-unknown")).empty
