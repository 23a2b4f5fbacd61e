"""The text `gateway__workflow_status` gives a model: what another agent's held or open step means."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.coordination.workflow_tools import describe
from gateway.coordination.workflows import PendingApproval, WorkflowStep, WorkflowTimeline

NOW = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
HELD_REASON = "Approval A-1 needs 1 approval from role:finance-managers. Repeat the identical call to get its outcome."


def _timeline(*steps: WorkflowStep) -> WorkflowTimeline:
    pending = PendingApproval("A-1", "finance__pay", "pay-bot", "pending", ("role:finance-managers",), NOW, NOW)
    return WorkflowTimeline("case-1", steps, (), (pending,), total_steps=len(steps), truncated=False)


def test_a_held_step_says_it_waits_for_people_without_the_makers_instructions() -> None:
    held = WorkflowStep("c1", NOW, "finance__pay", "pay-bot", None, "hold", "held", reason=HELD_REASON)
    text = describe(_timeline(held))
    assert "pay-bot called finance__pay: held, waiting for people" in text
    assert "Repeat the identical call" not in text  # that is for the agent that made the call, not the reader
    assert "approval A-1: pending, decided by role:finance-managers" in text


def test_a_held_call_that_ran_and_a_denied_one_keep_their_outcome_and_reason() -> None:
    ran = WorkflowStep("c1", NOW, "finance__pay", "pay-bot", None, "hold", "ok")
    denied = WorkflowStep("c2", NOW, "erp__order", "buy-bot", None, "deny", "denied", reason="check the vendor first")
    text = describe(_timeline(ran, denied))
    assert "pay-bot called finance__pay: held for approval, ok" in text
    assert "buy-bot called erp__order: deny, denied (check the vendor first)" in text


def test_an_open_step_is_a_running_status_read_or_a_call_without_an_outcome() -> None:
    reading = WorkflowStep("c1", NOW, "gateway__workflow_status", "pay-bot", None, "allow", None)
    open_call = WorkflowStep("c2", NOW, "finance__pay", "pay-bot", None, "allow", None)
    text = describe(_timeline(reading, open_call))
    assert "called gateway__workflow_status: running (a status read, such as this one)" in text
    assert "called finance__pay: no outcome yet (running, or its gateway stopped)" in text
