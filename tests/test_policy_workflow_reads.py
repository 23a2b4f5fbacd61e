"""Which policies read a workflow's state, and which tools must count in `completed` at once."""

from __future__ import annotations

import cedarpy

from gateway.policy.workflow_reads import WorkflowReads, workflow_reads


def _reads(*sources: str) -> WorkflowReads:
    policies = {}
    for index, source in enumerate(sources):
        for policy in cedarpy.PolicySet.from_str(source).to_pst().static_policies.values():
            policies[f"p{index}"] = policy
    return workflow_reads(policies)


def test_literal_names_compared_with_completed_are_tracked_and_nothing_else() -> None:
    reads = _reads(
        'forbid (principal, action == Action::"erp__order", resource) '
        'unless { context.workflow.completed.contains("compliance__check") };',
        'permit (principal, action, resource) when { context.workflow.completed.containsAny(["a__x", "b__y"]) };',
        'permit (principal, action, resource) when { context.workflow.id == "w" && context.input.n == 1 };',
        'permit (principal, action, resource) when { context has workflow && context.reasoning == "r" };',
    )
    assert reads.readers == {"p0", "p1"}
    assert reads.completed_names == {"compliance__check", "a__x", "b__y"}
    assert reads.tracks("a__x") and not reads.tracks("erp__order")


def test_agents_are_state_but_track_no_tool() -> None:
    reads = _reads('permit (principal, action, resource) when { context.workflow.agents.contains("bot") };')
    assert reads.readers == {"p0"} and reads.completed_names == frozenset()


def test_any_other_use_of_completed_or_the_whole_context_tracks_every_tool() -> None:
    for condition in (
        "context.workflow.completed.contains(context.input.step)",
        "context.workflow.completed == context.workflow.agents",
        'context.workflow == {"id": "w", "completed": [], "agents": []}',
        'context == {"x": 1}',
    ):
        reads = _reads(f"permit (principal, action, resource) when {{ {condition} }};")
        assert reads.readers == {"p0"}, condition
        assert reads.completed_names is None and reads.tracks("any__tool"), condition


def test_merging_keeps_every_reader_and_widens_to_every_tool() -> None:
    narrow = _reads('permit (principal, action, resource) when { context.workflow.completed.contains("a__x") };')
    wide = _reads("permit (principal, action, resource) when { context.workflow.completed.contains(context.input.s) };")
    assert narrow.merged(WorkflowReads()).completed_names == {"a__x"}
    assert narrow.merged(wide).completed_names is None
