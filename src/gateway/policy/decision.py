"""What the access policies decided about one request, and why.

A `Decision` is built once and never changed. It names the policies that determined it (with
file, line and annotations, so `gateway policy` commands and the audit log can point at them),
the reason an agent may be shown (a policy's `@reason`, never its text) and any evaluation
errors, which always make the decision a deny.

A denied tool call or prompt also says whether the agent may see its target at all
(`concealed`): such an agent is told the name is unknown rather than why it was denied, so
probing names reveals nothing. The engine answers that while it decides, from the same loaded
set and its visibility cache, so the caller never asks a second time.

An allowed tool call also carries the Cedar request it was decided on (`prepared`), so the
approval policies evaluate that request instead of building it again (see `prepared.py`), and
their answer when it is known already (`hold`, see `joint.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.policy.hold import HoldDecision
    from gateway.policy.prepared import PreparedCall


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class PolicyRef:
    """One loaded policy as people know it: readable id, effect, where it is written, its annotations."""

    id: str
    effect: str
    file: str
    line: int
    annotations: Mapping[str, str]

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Decision:
    """Allow or deny, the policies that determined it, the reason to show, and any errors."""

    effect: Effect
    reason: str
    policies: tuple[PolicyRef, ...] = ()
    errors: tuple[str, ...] = ()
    #: Set on a deny that only the arguments caused (they break the tool's input schema): what is wrong.
    invalid_arguments: str | None = None
    #: Set on a denied tool call or prompt the agent may not see at all (its listing would not show it).
    #: Never set on an allow, nor on a resource read, whose denial is always explained.
    concealed: bool = False
    #: Set on an allowed tool call: its Cedar request, for `decide_hold`. Not part of the decision's value.
    prepared: PreparedCall | None = field(default=None, compare=False, repr=False)
    #: Set with `prepared` when the hold is known already: no approval policy can apply, or Cedar
    #: evaluated them with the access policies (see `joint.py`).
    hold: HoldDecision | None = field(default=None, compare=False, repr=False)

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW

    @property
    def policy_ids(self) -> tuple[str, ...]:
        return tuple(policy.id for policy in self.policies)

    @property
    def annotations(self) -> Mapping[str, Mapping[str, str]]:
        """Annotations of each determining policy, by policy id."""
        return MappingProxyType({policy.id: policy.annotations for policy in self.policies})

    def explain(self) -> str:
        """The decision and the policies that determined it, one per line, for people and logs."""
        lines = [f"{self.effect.value}: {self.reason}"]
        lines.extend(f"  {policy.effect} {policy.id} ({policy.location})" for policy in self.policies)
        lines.extend(f"  error: {error}" for error in self.errors)
        return "\n".join(lines)


def allow(
    reason: str,
    policies: tuple[PolicyRef, ...],
    prepared: PreparedCall | None = None,
    hold: HoldDecision | None = None,
) -> Decision:
    return Decision(Effect.ALLOW, reason, policies, prepared=prepared, hold=hold)


def deny(
    reason: str,
    policies: tuple[PolicyRef, ...] = (),
    errors: tuple[str, ...] = (),
    *,
    invalid_arguments: str | None = None,
) -> Decision:
    return Decision(Effect.DENY, reason, policies, errors, invalid_arguments)
