"""What approval policies ask of a call they hold: who approves, how many, for how long.

An approval `permit` that matches an allowed call holds it until people approve; its
annotations say who may decide (`Requirement`). The values here are plain and frozen, so the
approval store, the pipeline's hold stage and the CLI can pass them around without reaching
into the policy engine. When several permits hold one call, `combine` makes one requirement of
them that satisfies each (see its docstring): the strictest reading of every part.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.policy.decision import PolicyRef

#: How long a hold waits for its approvals when its policy sets no `@expires`.
DEFAULT_EXPIRY = timedelta(hours=1)

_APPROVER = re.compile(r"(role|user):(.+)")


def parse_approver(entry: str) -> tuple[str, str]:
    """`("role", name)` or `("user", name)` for an approvers entry; anything else is a policy's mistake."""
    match = _APPROVER.fullmatch(entry)
    if match is None:
        raise ValueError(f"approver {entry!r} must be 'role:NAME' or 'user:NAME'")
    return match.group(1), match.group(2)


@dataclass(frozen=True, slots=True)
class Requirement:
    """The approvals a held call needs before it may run, and what the agent and approvers are told.

    `approvers` are `role:<role>` and `user:<user id>` entries, any of whom may approve;
    `quorum` is how many distinct people must. `escalate_to` is told when no decision came
    within `escalate_after`.
    """

    approvers: tuple[str, ...]
    quorum: int = 1
    expires_in: timedelta = DEFAULT_EXPIRY
    reason: str | None = None
    reasons: tuple[str, ...] = ()
    escalate_after: timedelta | None = None
    escalate_to: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.approvers:
            raise ValueError("an approval needs at least one approver")
        for entry in (*self.approvers, *self.escalate_to):
            parse_approver(entry)
        if self.quorum < 1:
            raise ValueError("the quorum of an approval must be at least 1")
        if self.expires_in <= timedelta(0):
            raise ValueError("an approval must expire some time after it is made")
        if self.escalate_after is not None and self.escalate_after <= timedelta(0):
            raise ValueError("escalate_after must be positive")

    def describe(self) -> str:
        """One line for people: who approves, how many, within how long."""
        text = f"approval by {', '.join(self.approvers)} (quorum {self.quorum}, expires in {self.expires_in})"
        if self.escalate_after is not None:
            text += f"; escalated to {', '.join(self.escalate_to)} after {self.escalate_after}"
        return text


def combine(requirements: Iterable[Requirement]) -> Requirement | None:
    """One requirement that satisfies every given one (in file order of their policies); None for none.

    Each part is read the strict way, so adding a holding policy never weakens a hold: the
    approvers are the union (sorted), the quorum the largest, the expiry the shortest; the
    reason shown is the first one given, and every distinct reason is kept in `reasons`; the
    escalation comes after the shortest `escalate_after` to the union of `escalate_to`. The
    combined escalation may come no sooner than the combined expiry: the hold then expires first.
    """
    given = list(requirements)
    if not given:
        return None
    reasons = tuple(dict.fromkeys(r.reason for r in given if r.reason))
    escalations = [r.escalate_after for r in given if r.escalate_after is not None]
    return Requirement(
        approvers=tuple(sorted({approver for r in given for approver in r.approvers})),
        quorum=max(r.quorum for r in given),
        expires_in=min(r.expires_in for r in given),
        reason=reasons[0] if reasons else None,
        reasons=reasons,
        escalate_after=min(escalations) if escalations else None,
        escalate_to=tuple(sorted({target for r in given for target in r.escalate_to})),
    )


@dataclass(frozen=True, slots=True)
class HoldDecision:
    """Whether an allowed call waits for approval, what it needs, and the policies that decided.

    `policies` are the holding permits, or the exempting forbids of a call not held. `errors`
    are evaluation errors: a call whose approval policies could not be evaluated is held.
    """

    held: bool
    requirement: Requirement | None = None
    policies: tuple[PolicyRef, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def policy_ids(self) -> tuple[str, ...]:
        return tuple(policy.id for policy in self.policies)

    def explain(self) -> str:
        """The hold and the policies behind it, one per line, for people and logs."""
        if not self.held:
            lines = ["not held: " + ("exempted by an approval forbid" if self.policies else "no approval policy holds")]
        else:
            lines = ["held: " + (self.requirement.describe() if self.requirement else "approval needed")]
            if self.requirement is not None and self.requirement.reason:
                lines.append(f"  reason: {self.requirement.reason}")
        lines.extend(f"  {policy.effect} {policy.id} ({policy.location})" for policy in self.policies)
        lines.extend(f"  error: {error}" for error in self.errors)
        return "\n".join(lines)


#: The answer for every call while no approval policy is loaded.
NOT_HELD = HoldDecision(held=False)


@dataclass(frozen=True, slots=True)
class ApprovalContext:
    """The approval a held call was given, as access policies see it when it is about to run."""

    granted: bool
    approvers: tuple[str, ...]
    decided_at: datetime

    def cedar(self) -> dict[str, Any]:
        """`context.approval`: `decided_at` in UTC ISO 8601 like `context.time.iso`."""
        moment = self.decided_at
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        return {
            "granted": self.granted,
            "approvers": list(self.approvers),
            "decided_at": moment.isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
