"""The access and the approval policies that can apply to a tool call, as one set Cedar evaluates once.

A call that an approval policy's scope covers needs two answers: may it run, and must people
approve it first. Each Cedar call has a fixed cost (building the request, parsing its context,
writing the answer out and reading it back) that is most of what evaluating a few policies
costs, so asking Cedar once for both sets leaves the hold little more than the approval
policies' own conditions and the context attributes only they read.

One answer serves both because policies do not interact: each is satisfied, unsatisfied or in
error on its own, and Cedar's answer names the policies that determined it. When no policy of
either set errs and no forbid matches, the answer is Allow (or Deny when nothing matched) and
names every matching permit; the access permits among them are the access answer and the
approval permits the hold, exactly as each set evaluated alone would have said. When only
access forbids match, the call is denied by them, as alone. Any other answer (an error, whose
policy Cedar names only in prose; an approval forbid, which hides whether the access policies
allow) does not tell the sets apart, and the caller asks each set alone. When the access
policies' scopes alone settle the call (see `slices.py`), there is nothing to share: only the
approval policies are evaluated, alone, which is the hold the joint answer gives.

Access and approval policy ids never overlap (the store refuses a load where they would), so
the union keeps every policy's own id. Joint sets are cached per pair of slices, within the same
bounds as the slices themselves.
"""

from __future__ import annotations

from collections.abc import Mapping

from cedarpy import pst

from gateway.policy.loader import policy_set
from gateway.policy.slices import CACHED_POLICY_BUDGET, CACHED_REQUEST_SHAPES, Slice


class JointSlices:
    """Union slices of one loaded access set and approval set; see the module docstring."""

    def __init__(self, access: Mapping[str, pst.Template], approval: Mapping[str, pst.Template]) -> None:
        self._access = access
        self._approval = approval
        self._by_members: dict[tuple[frozenset[str], frozenset[str]], Slice] = {}
        self._held = 0

    def for_slices(self, access: Slice, approval: Slice) -> Slice:
        """One slice holding the policies of both; raises ValueError should their ids overlap."""
        key = (access.members, approval.members)
        found = self._by_members.get(key)
        if found is not None:
            return found
        if access.members & approval.members:
            raise ValueError("an access and an approval policy share an id; each set is evaluated alone")
        size = len(access.members) + len(approval.members)
        if self._held + size > CACHED_POLICY_BUDGET or len(self._by_members) >= CACHED_REQUEST_SHAPES:
            self._by_members.clear()
            self._held = 0
        chosen = {policy_id: self._access[policy_id] for policy_id in sorted(access.members)}
        chosen.update((policy_id, self._approval[policy_id]) for policy_id in sorted(approval.members))
        keys = None
        if access.context_keys is not None and approval.context_keys is not None:
            keys = access.context_keys | approval.context_keys
        found = Slice(policy_set(chosen), keys, None, access.members | approval.members)
        self._by_members[key] = found
        self._held += size
        return found
