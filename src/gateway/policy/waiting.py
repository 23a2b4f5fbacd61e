"""Policies that wait for a connector to list its tools, and why letting them wait opens nothing.

The schema is generated from the live catalog, so a policy naming an action of a connector
that has never listed (down since the first start, no listing stored) cannot be validated.
Refusing the whole set for it would deny every agent everything while the other backends
could serve. So, at each load:

- A policy may wait only when it fails validation and every action it names that the schema
  lacks can belong to a connector that has not listed: one of its tools (`C<separator>...`),
  `server:C`, `label:L` for a label C's file gives, or a generic group (`call_tool`,
  `read_only`, `destructive`, `idempotent`, `open_world`) while some connector has not listed.
  Any other failure is a load error, as before.
- A waiting `permit` is left out: a missing permit can only deny more.
- A waiting `forbid` is left out only when its scope confines it to what has not listed:
  its action scope names only actions the schema lacks (no listed tool is such an action or
  a member of such a group, so the forbid cannot match a request on a listed tool), or its
  resource scope is the `Server` of a connector that has not listed, or a `Tool`/`Prompt` of
  one that the catalog does not hold. Every request such a forbid could match concerns the
  unlisted connector, whose tools, prompts and resources are not in the catalog: they are
  refused as unknown, and what lists later is denied until the policies are re-validated
  with it (tools and prompts are checked against the schema the set was validated with,
  resources against the connectors that had listed by then).
- A forbid whose scope also covers listed tools (only its condition, or part of an action
  list, names the unlisted connector) could stop calls to listed tools, yet cannot be
  checked: leaving it out could allow what it forbids, so the whole set is refused (fail
  closed) with a message saying how to split it.
- When the connector lists, the catalog change re-validates the files: the waiting policies
  are checked like any other and loaded, or reported as load errors (the running set stays).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cedarpy import pst

from gateway.catalog import Catalog
from gateway.policy.loader import LoadedPolicies, ValidationProblem
from gateway.policy.schema import ANNOTATION_GROUPS, CALL_TOOL, PROMPT, SERVER, TOOL, GeneratedSchema

_GENERIC_GROUPS = frozenset({CALL_TOOL, *ANNOTATION_GROUPS})
_SERVER_PREFIX = "server:"
_LABEL_PREFIX = "label:"


@dataclass(frozen=True, slots=True)
class Unlisted:
    """The connectors that have never listed, and what a policy could name of theirs."""

    connectors: tuple[str, ...]
    separator: str
    labels: Mapping[str, frozenset[str]]

    @classmethod
    def of(cls, catalog: Catalog) -> Unlisted:
        names = catalog.unlisted_connectors()
        return cls(names, catalog.separator, {name: catalog.configured_labels(name) for name in names})

    def owners(self, action: str) -> tuple[str, ...]:
        """The unlisted connectors whose listing could bring `action`; empty when none could."""
        if action in _GENERIC_GROUPS:
            return self.connectors
        if action.startswith(_SERVER_PREFIX):
            name = action[len(_SERVER_PREFIX) :]
            return (name,) if name in self.connectors else ()
        if action.startswith(_LABEL_PREFIX):
            label = action[len(_LABEL_PREFIX) :]
            return tuple(name for name in self.connectors if label in self.labels[name])
        return self.tool_owners(action)

    def tool_owners(self, exposed: str) -> tuple[str, ...]:
        """Exposed names start with the connector's name and the separator, even when shortened."""
        return tuple(name for name in self.connectors if exposed.startswith(f"{name}{self.separator}"))


@dataclass(frozen=True, slots=True)
class WaitingPolicy:
    """A policy left out of the active set until the connectors it names have listed."""

    id: str
    effect: str
    file: str
    line: int
    connectors: tuple[str, ...]
    actions: tuple[str, ...]

    def describe(self) -> str:
        names = ", ".join(f'Action::"{action}"' for action in self.actions)
        return (
            f"{self.file}:{self.line}: policy '{self.id}' ({self.effect}) waits for {_connectors(self.connectors)} "
            f"to list {'its' if len(self.connectors) == 1 else 'their'} tools (it names {names}); "
            "until then those tools are unavailable"
        )


@dataclass(frozen=True, slots=True)
class Sorted:
    """What the validation problems mean once unlisted connectors are accounted for."""

    waiting: tuple[WaitingPolicy, ...]
    errors: tuple[str, ...]  # load errors: the whole set is refused when there is any


def sort_problems(
    loaded: LoadedPolicies,
    problems: Sequence[ValidationProblem],
    schema: GeneratedSchema,
    unlisted: Unlisted,
    *,
    restrictive: str = "forbid",
) -> Sorted:
    """Split the validation problems into policies that wait and errors that refuse the set.

    `restrictive` is the effect whose leaving out could let through what it stops: `forbid` for
    access policies; `permit` for approval policies, where a missing permit would let a call run
    without the approval it needs. Only such a policy must be confined to wait.
    """
    failing: dict[str, list[str]] = {}
    errors: list[str] = []
    for problem in problems:
        if problem.policy is None:
            errors.append(problem.text)
        else:
            failing.setdefault(problem.policy, []).append(problem.text)
    if not unlisted.connectors:
        return Sorted((), (*errors, *(text for texts in failing.values() for text in texts)))
    known = frozenset(schema.document[""]["actions"])
    waiting: list[WaitingPolicy] = []
    for policy_id, texts in failing.items():
        policy = loaded.policies[policy_id]
        ref = loaded.refs[policy_id]
        unknown = sorted({uid.id for uid in _action_uids(policy) if uid.id not in known})
        owners = {action: unlisted.owners(action) for action in unknown}
        if not unknown or not all(owners.values()):
            errors.extend(texts)  # fails for a reason no listing can cure
            continue
        connectors = tuple(dict.fromkeys(name for names in owners.values() for name in names))
        if policy.effect == restrictive and not _confined(policy, known, unlisted, schema):
            stops = "allow what it forbids" if restrictive == "forbid" else "run unheld what it holds"
            errors.append(
                f"{ref.file}:{ref.line}: policy '{policy_id}': this {restrictive} names actions of "
                f"{_connectors(connectors)}, not listed yet, and its scope also covers listed tools: it can neither "
                f"be checked nor left out (that could {stops}), so the whole set is refused until the connector "
                f"lists. Split it: a {restrictive} scoped to that connector's actions "
                f'(action in Action::"server:{connectors[0]}") can wait for it, '
                "and one for the other tools is checked now"
            )
            continue
        waiting.append(WaitingPolicy(policy_id, policy.effect, ref.file, ref.line, connectors, tuple(unknown)))
    return Sorted(tuple(waiting), tuple(errors))


def _action_uids(policy: pst.Template) -> Iterable[pst.EntityUid]:
    return (uid for uid in pst.entity_uids(policy) if uid.type.basename == "Action" and not uid.type.namespace)


def _confined(policy: pst.Template, known: frozenset[str], unlisted: Unlisted, schema: GeneratedSchema) -> bool:
    """Whether the scope alone keeps the forbid off every request on what has listed (see the module docstring)."""
    action = policy.action
    if isinstance(action, pst.ActionEq) and action.entity.id not in known:
        return True
    if isinstance(action, pst.ActionIn) and action.entities and all(e.id not in known for e in action.entities):
        return True
    resource = policy.resource
    entity = getattr(resource, "entity", None)
    if not isinstance(entity, pst.EntityUid) or entity.type.namespace:
        return False  # no resource constraint, `resource is T`, or a template slot
    kind = entity.type.basename
    if kind == SERVER:
        return entity.id in unlisted.connectors
    if kind == TOOL:
        return entity.id not in schema.tools and bool(unlisted.tool_owners(entity.id))
    if kind == PROMPT:
        return entity.id not in schema.prompts and bool(unlisted.tool_owners(entity.id))
    return False


def _connectors(names: Sequence[str]) -> str:
    quoted = ", ".join(f"'{name}'" for name in names)
    return f"connector {quoted}" if len(names) == 1 else f"connectors {quoted}"
