"""Only the policies that can apply to a request: a parsed sub-set per request shape, built on first use.

Cedar's cost grows with every policy it evaluates (about 1 µs each, more with conditions), and
most policies name a few tools, groups, roles or agents. A policy can apply to a request only
when each of its three scopes can match:

- action: unconstrained, equal to the requested action, or containing it or one of its groups;
- principal and resource: unconstrained, equal to the entity, `in` the entity or one of its
  ancestors, `is` its type. The ancestors are read transitively from the very entity data Cedar
  is given (`entities.ancestors`), so they are what Cedar's `in` sees.

A slice whose policies all have exact scopes and no `when`/`unless` conditions has the same
answer for every context: allow when it holds a permit and no forbid. That `verdict` answers
"could this ever be allowed?" for listings without asking Cedar, whose partial evaluation
costs time in proportion to the whole catalog (tens of milliseconds a tool at 50,000 tools),
and decides requests without asking Cedar either. Exact scopes make a slice hold exactly the
policies that apply, so Cedar's reasons are known too (`determining`): every permit of the slice
for an allow, every forbid for a deny. Nothing in such a slice can fail to evaluate: a scope
only compares entities, and a missing entity is simply not `in` anything.

A policy whose scope does not match contributes nothing to Cedar's answer: Cedar checks the
scope before the conditions, so it neither decides nor raises an error. Evaluating the slice
therefore gives the same decision, reasons and errors as the whole set.

Each slice also knows which top-level context attributes its policies read (`context.x`,
`context has x`); the engine sends Cedar only those, since parsing the context is most of what
a decision costs when few policies apply. A slice that uses `context` any other way gets it whole.

Slices are cached by what they depend on: the action, and of the principal and the resource
only their type and the entities of their ancestry that some policy names. So every agent with
the same named roles shares one slice, however many agents there are. Slices holding the same
policies share one parsed set, and the cache is bounded by the number of policies it holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import cedarpy
from cedarpy import pst

from gateway.policy.entities import EntityKey
from gateway.policy.loader import policy_set

#: Past this many policies held across cached slices, the caches start over (a slice of 1,000
#: policies takes about 3 MiB and 15 ms to build).
CACHED_POLICY_BUDGET = 50_000

#: Past this many request shapes (action, principal and resource as the policies see them), the
#: caches start over too.
CACHED_REQUEST_SHAPES = 65_536


@dataclass(frozen=True, slots=True)
class ScopeTarget:
    """A request's principal or resource: its type, its own uid and its ancestors' uids."""

    entity_type: str
    entity_id: str
    ancestors: tuple[EntityKey, ...] = ()


@dataclass(frozen=True, slots=True)
class Slice:
    """The parsed policies that can apply to a request, and the context attributes they read.

    `context_keys` is None when some policy uses `context` other than by reading an attribute:
    then the whole context must go to Cedar. `verdict` is Cedar's decision for every context when
    the scopes alone decide it (no policy has conditions), else None; `determining` is then the
    policies Cedar names for it, in the slice's order.
    """

    policies: cedarpy.PolicySet
    context_keys: frozenset[str] | None
    verdict: bool | None = None
    #: The ids of the policies in the slice.
    members: frozenset[str] = frozenset()
    #: With a `verdict`: its permits for an allow, its forbids for a deny (none when nothing applies).
    determining: tuple[str, ...] = ()

    def context_for(self, context: dict[str, Any]) -> dict[str, Any]:
        """`context` without the attributes no policy of this slice reads (they cannot change its answer)."""
        keys = self.context_keys
        if keys is None:
            return context
        return {key: value for key, value in context.items() if key in keys}


def context_keys(policies: Iterable[pst.Template]) -> frozenset[str] | None:
    """The top-level context attributes the policies read, or None when one uses `context` whole."""
    keys: set[str] = set()
    pending: list[Any] = [policy.clauses for policy in policies]
    while pending:
        node = pending.pop()
        if isinstance(node, pst.GetAttr) and _is_context(node.base):
            keys.add(node.attr)
        elif isinstance(node, pst.HasAttr) and _is_context(node.base):
            keys.add(node.attrs[0])
        elif _is_context(node):
            return None
        elif isinstance(node, (tuple, list)):
            pending.extend(node)
        elif isinstance(node, Mapping):
            pending.extend(node.values())
        elif dataclasses.is_dataclass(node):
            pending.extend(getattr(node, field.name) for field in dataclasses.fields(node))
    return frozenset(keys)


def scope_verdict(policies: Iterable[pst.Template]) -> bool | None:
    """Allow or deny for every context when no policy has a condition and every scope is a known form, else None.

    Only then is each policy's applying fully decided by the scopes the slice already matched;
    an unknown scope form is kept in a slice without proof that it applies, so it needs Cedar.
    """
    effects: set[str] = set()
    for policy in policies:
        if policy.clauses or not _exact_scopes(policy):
            return None
        effects.add(policy.effect)
    return "permit" in effects and "forbid" not in effects


def verdict_reasons(policies: Mapping[str, pst.Template], verdict: bool | None) -> tuple[str, ...]:
    """The ids Cedar gives as reasons for `verdict` when every policy applies: the permits of an
    allow, the forbids of a deny (Cedar names no permit when a forbid wins); none without a verdict."""
    if verdict is None:
        return ()
    effect = "permit" if verdict else "forbid"
    return tuple(policy_id for policy_id, policy in policies.items() if policy.effect == effect)


def _exact_scopes(policy: pst.Template) -> bool:
    action = policy.action
    action_known = isinstance(action, (pst.ActionEq, pst.ActionIn, pst.ScopeAny))
    return action_known and all(
        isinstance(scope, pst.ScopeAny) or _scope(scope).kind != "any" for scope in (policy.principal, policy.resource)
    )


def _is_context(node: object) -> bool:
    return isinstance(node, pst.Var) and node.name == "context"


@dataclass(frozen=True, slots=True)
class _Shape:
    """What of a principal or resource the principal/resource scopes can tell apart."""

    entity_type: str
    itself: EntityKey | None
    ancestors: frozenset[EntityKey]


@dataclass(frozen=True, slots=True)
class _Scope:
    """One policy's principal or resource scope: `kind` is any, eq, in, is or is_in."""

    kind: str
    entity_type: str | None = None
    entity: EntityKey | None = None

    def admits(self, shape: _Shape) -> bool:
        if self.kind == "any":
            return True
        if self.kind == "is":
            return shape.entity_type == self.entity_type
        if self.kind == "eq":
            return shape.itself == self.entity
        within = shape.itself == self.entity or self.entity in shape.ancestors
        if self.kind == "in":
            return within
        return within and shape.entity_type == self.entity_type


def _type_name(entity_type: pst.EntityType) -> str:
    return "::".join((*entity_type.namespace, entity_type.basename))


def _key(entity: pst.EntityUid) -> EntityKey:
    return (_type_name(entity.type), entity.id)


def _scope(constraint: object) -> _Scope:
    if isinstance(constraint, pst.ScopeEq) and isinstance(constraint.entity, pst.EntityUid):
        return _Scope("eq", entity=_key(constraint.entity))
    if isinstance(constraint, pst.ScopeIn) and isinstance(constraint.entity, pst.EntityUid):
        return _Scope("in", entity=_key(constraint.entity))
    if isinstance(constraint, pst.ScopeIs):
        return _Scope("is", entity_type=_type_name(constraint.entity_type))
    if isinstance(constraint, pst.ScopeIsIn) and isinstance(constraint.entity, pst.EntityUid):
        return _Scope("is_in", entity_type=_type_name(constraint.entity_type), entity=_key(constraint.entity))
    # Unconstrained, or a form this code does not know (a template slot): keep the policy, so
    # Cedar decides it. Keeping a policy is always safe; only dropping one needs proof.
    return _Scope("any")


class PolicySlices:
    def __init__(self, policies: Mapping[str, pst.Template], action_groups: Mapping[str, tuple[str, ...]]) -> None:
        self._policies = policies
        self._groups = action_groups
        self._any: list[str] = []
        self._equal: dict[str, list[str]] = {}
        self._within: dict[str, list[str]] = {}
        self._principal_scopes: dict[str, _Scope] = {}
        self._resource_scopes: dict[str, _Scope] = {}
        for policy_id, policy in policies.items():
            scope = policy.action
            if isinstance(scope, pst.ActionEq):
                self._equal.setdefault(scope.entity.id, []).append(policy_id)
            elif isinstance(scope, pst.ActionIn):
                for entity in dict.fromkeys(e.id for e in scope.entities):
                    self._within.setdefault(entity, []).append(policy_id)
            else:
                self._any.append(policy_id)
            self._principal_scopes[policy_id] = _scope(policy.principal)
            self._resource_scopes[policy_id] = _scope(policy.resource)
        self._named_principals = frozenset(s.entity for s in self._principal_scopes.values() if s.entity)
        self._named_resources = frozenset(s.entity for s in self._resource_scopes.values() if s.entity)
        self._by_action: dict[str, tuple[str, ...]] = {}
        self._by_request: dict[tuple[str, _Shape, _Shape], Slice] = {}
        self._by_members: dict[frozenset[str], Slice] = {}
        self._held = 0

    def matching(self, action: str) -> tuple[str, ...]:
        """Ids of the policies whose action scope can match `action`, in a stable order."""
        ids = self._by_action.get(action)
        if ids is None:
            found = set(self._any)
            found.update(self._equal.get(action, ()))
            for ancestor in (action, *self._groups.get(action, ())):
                found.update(self._within.get(ancestor, ()))
            ids = tuple(sorted(found))
            self._by_action[action] = ids
        return ids

    @property
    def cached_request_shapes(self) -> int:
        """How many distinct request shapes have a cached slice (for the cache's own bounds)."""
        return len(self._by_request)

    def for_request(self, action: str, principal: ScopeTarget, resource: ScopeTarget) -> Slice:
        """The policies that can apply to this action, principal and resource."""
        key = (action, self._shape(principal, self._named_principals), self._shape(resource, self._named_resources))
        cached = self._by_request.get(key)
        if cached is not None:
            return cached
        _, principal_shape, resource_shape = key
        members = frozenset(
            policy_id
            for policy_id in self.matching(action)
            if self._principal_scopes[policy_id].admits(principal_shape)
            and self._resource_scopes[policy_id].admits(resource_shape)
        )
        if len(self._by_request) >= CACHED_REQUEST_SHAPES:
            self._by_request.clear()
        found = self._by_members.get(members)
        if found is None:
            if self._held + len(members) > CACHED_POLICY_BUDGET:
                self._by_members.clear()
                self._by_request.clear()
                self._held = 0
            chosen = {policy_id: self._policies[policy_id] for policy_id in sorted(members)}
            verdict = scope_verdict(chosen.values())
            found = Slice(
                policy_set(chosen), context_keys(chosen.values()), verdict, members, verdict_reasons(chosen, verdict)
            )
            self._by_members[members] = found
            self._held += len(members)
        self._by_request[key] = found
        return found

    @staticmethod
    def _shape(target: ScopeTarget, named: frozenset[EntityKey]) -> _Shape:
        itself = (target.entity_type, target.entity_id)
        return _Shape(
            target.entity_type,
            itself if itself in named else None,
            frozenset(ancestor for ancestor in target.ancestors if ancestor in named),
        )
