"""Only the policies that can match an action: a parsed sub-set per action, built on first use.

Cedar's cost grows with every policy it evaluates (about 1 µs each), and most policies name a
few tools or groups. A policy can match a request only when its action scope is unconstrained,
equals the requested action, or contains the action or one of its groups, so evaluating that
slice gives the same decision as the whole set. Slices are keyed by the policies they hold,
so tools that match the same policies share one parsed set.
"""

from __future__ import annotations

from collections.abc import Mapping

import cedarpy
from cedarpy import pst

from gateway.policy.loader import policy_set


class PolicySlices:
    def __init__(self, policies: Mapping[str, pst.Template], action_groups: Mapping[str, tuple[str, ...]]) -> None:
        self._policies = policies
        self._groups = action_groups
        self._any: list[str] = []
        self._equal: dict[str, list[str]] = {}
        self._within: dict[str, list[str]] = {}
        for policy_id, policy in policies.items():
            scope = policy.action
            if isinstance(scope, pst.ActionEq):
                self._equal.setdefault(scope.entity.id, []).append(policy_id)
            elif isinstance(scope, pst.ActionIn):
                for entity in dict.fromkeys(e.id for e in scope.entities):
                    self._within.setdefault(entity, []).append(policy_id)
            else:
                self._any.append(policy_id)
        self._by_action: dict[str, cedarpy.PolicySet] = {}
        self._by_members: dict[frozenset[str], cedarpy.PolicySet] = {}

    def matching(self, action: str) -> frozenset[str]:
        """Ids of the policies whose action scope can match `action`."""
        ids = set(self._any)
        ids.update(self._equal.get(action, ()))
        for ancestor in (action, *self._groups.get(action, ())):
            ids.update(self._within.get(ancestor, ()))
        return frozenset(ids)

    def for_action(self, action: str) -> cedarpy.PolicySet:
        policies = self._by_action.get(action)
        if policies is None:
            members = self.matching(action)
            policies = self._by_members.get(members)
            if policies is None:
                policies = policy_set({policy_id: self._policies[policy_id] for policy_id in sorted(members)})
                self._by_members[members] = policies
            self._by_action[action] = policies
        return policies
