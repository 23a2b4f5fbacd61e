"""Joint slices: the access and approval policies of a call as one set, cached per pair of slices.

What one evaluation of them decides is checked against each set alone in `test_policy_approvals.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import cedarpy
import pytest
from cedarpy import pst

from gateway.policy.joint import JointSlices
from gateway.policy.loader import policy_set
from gateway.policy.slices import Slice


def templates(prefix: str, text: str) -> dict[str, pst.Template]:
    parsed = cedarpy.PolicySet.from_str(text).to_pst().static_policies.values()
    return {f"{prefix}{i}": dataclasses.replace(policy, id=f"{prefix}{i}") for i, policy in enumerate(parsed)}


ACCESS = templates(
    "access-",
    "permit (principal, action, resource) when { context.input.amount > 1 };\n"
    "forbid (principal, action, resource) when { context has reasoning };",
)
APPROVAL = templates("approval-", "permit (principal, action, resource) when { context.time.hour > 8 };")


def slice_of(policies: Mapping[str, pst.Template], keys: frozenset[str] | None) -> Slice:
    return Slice(policy_set(dict(policies)), keys, None, frozenset(policies))


def test_a_joint_slice_holds_both_sets_and_reads_what_either_reads() -> None:
    joint = JointSlices(ACCESS, APPROVAL)
    access, approval = slice_of(ACCESS, frozenset({"input", "reasoning"})), slice_of(APPROVAL, frozenset({"time"}))

    both = joint.for_slices(access, approval)

    assert both.members == {"access-0", "access-1", "approval-0"}
    assert both.context_keys == {"input", "reasoning", "time"}
    assert both.verdict is None
    assert joint.for_slices(access, approval) is both
    assert set(both.policies.to_pst().static_policies) == both.members


def test_a_set_that_uses_the_context_whole_gets_it_whole_jointly() -> None:
    joint = JointSlices(ACCESS, APPROVAL)

    both = joint.for_slices(slice_of(ACCESS, frozenset({"input"})), slice_of(APPROVAL, None))

    assert both.context_keys is None


def test_sets_sharing_an_id_are_not_joined() -> None:
    clashing = templates("access-", "permit (principal, action, resource);")
    joint = JointSlices(ACCESS, clashing)

    with pytest.raises(ValueError, match="share an id"):
        joint.for_slices(slice_of(ACCESS, frozenset()), slice_of(clashing, frozenset()))


def test_the_joint_cache_starts_over_past_its_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.policy.joint.CACHED_REQUEST_SHAPES", 1)
    joint = JointSlices(ACCESS, APPROVAL)
    first = slice_of({"access-0": ACCESS["access-0"]}, frozenset())
    second = slice_of({"access-1": ACCESS["access-1"]}, frozenset())
    approval = slice_of(APPROVAL, frozenset())

    kept = joint.for_slices(first, approval)
    joint.for_slices(second, approval)

    assert joint.for_slices(first, approval) is not kept  # built again: the cache held one pair
