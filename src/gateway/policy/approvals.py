"""The annotations of approval policies, checked at load: a hold nobody can decide never loads.

Every approval `permit` names who approves (`@approvers`) and may set `@quorum`, `@expires`,
`@reason` and an escalation (`@escalate_after` with `@escalate_to`). An approval `forbid` is
an exemption and takes none of them. Approval policies take no other annotation besides `@id`:
a misspelt one (`@qourum`) would otherwise weaken a hold without a word. Each problem is a load
error with the file and line of the annotation, like any other policy error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType

from pydantic import TypeAdapter, ValidationError

from gateway.policy.decision import PolicyRef
from gateway.policy.hold import DEFAULT_EXPIRY, Requirement
from gateway.policy.loader import LoadedPolicies

#: The annotations an approval policy may carry; `@id` names it, like any policy.
REQUIREMENT_ANNOTATIONS = ("approvers", "quorum", "expires", "reason", "escalate_after", "escalate_to")
_ALLOWED = frozenset({"id", *REQUIREMENT_ANNOTATIONS})
_APPROVER_KINDS = ("role", "user")
_DURATION = TypeAdapter(timedelta)


@dataclass(frozen=True, slots=True)
class ApprovalRules:
    """The requirement each approval permit sets, by policy id, or the load errors that refuse the set."""

    requirements: Mapping[str, Requirement]
    errors: tuple[str, ...] = ()


class _Invalid(Exception):
    """One annotation's problem; carries the annotation's name to find its line."""

    def __init__(self, annotation: str, problem: str) -> None:
        super().__init__(problem)
        self.annotation = annotation


def approval_rules(loaded: LoadedPolicies) -> ApprovalRules:
    """Check every approval policy's annotations and read each permit's requirement."""
    texts = {str(file.path): file.text for file in loaded.files}
    requirements: dict[str, Requirement] = {}
    errors: list[str] = []
    for policy_id, ref in loaded.refs.items():
        try:
            requirement = _requirement(ref)
        except _Invalid as invalid:
            line = _annotation_line(texts.get(ref.file, ""), ref.line, invalid.annotation)
            errors.append(f"{ref.file}:{line}: approval policy '{policy_id}': {invalid}")
            continue
        if requirement is not None:
            requirements[policy_id] = requirement
    return ApprovalRules(MappingProxyType(requirements), tuple(errors))


def _requirement(ref: PolicyRef) -> Requirement | None:
    annotations = ref.annotations
    for name in annotations:
        if name not in _ALLOWED:
            raise _Invalid(
                name,
                f"unknown annotation @{name}; approval policies take @id and "
                + ", ".join(f"@{known}" for known in REQUIREMENT_ANNOTATIONS),
            )
    if ref.effect == "forbid":
        for name in REQUIREMENT_ANNOTATIONS:
            if name in annotations:
                raise _Invalid(name, f"an approval forbid exempts calls from holds and takes no @{name}")
        return None
    if "approvers" not in annotations:
        raise _Invalid("id", '@approvers is required on an approval permit (for example @approvers("role:finance"))')
    approvers = _principals(annotations, "approvers")
    quorum = _quorum(annotations.get("quorum"))
    users = [approver for approver in approvers if approver.startswith("user:")]
    if len(users) == len(approvers) and quorum > len(users):
        raise _Invalid(
            "quorum", f"@quorum is {quorum} but @approvers names only {len(users)} user(s): the hold could never pass"
        )
    expires_in = _duration(annotations, "expires") if "expires" in annotations else DEFAULT_EXPIRY
    reason = annotations.get("reason")
    if reason is not None and not reason.strip():
        raise _Invalid("reason", "@reason is empty")
    escalate_after: timedelta | None = None
    escalate_to: tuple[str, ...] = ()
    if ("escalate_after" in annotations) != ("escalate_to" in annotations):
        given, missing = (
            ("escalate_after", "escalate_to") if "escalate_after" in annotations else ("escalate_to", "escalate_after")
        )
        raise _Invalid(given, f"@{given} needs @{missing}: an escalation says both when and to whom")
    if "escalate_after" in annotations:
        escalate_after = _duration(annotations, "escalate_after")
        if escalate_after >= expires_in:
            raise _Invalid(
                "escalate_after",
                f"@escalate_after ({escalate_after}) must be shorter than the hold's expiry ({expires_in})",
            )
        escalate_to = _principals(annotations, "escalate_to")
    return Requirement(
        approvers=approvers,
        quorum=quorum,
        expires_in=expires_in,
        reason=reason,
        reasons=(reason,) if reason else (),
        escalate_after=escalate_after,
        escalate_to=escalate_to,
    )


def _principals(annotations: Mapping[str, str], name: str) -> tuple[str, ...]:
    """`role:<role>` and `user:<user id>` entries, comma-separated; sorted, without repeats."""
    entries = [entry.strip() for entry in annotations[name].split(",")]
    found: set[str] = set()
    for entry in entries:
        kind, _, who = entry.partition(":")
        if kind not in _APPROVER_KINDS or not who.strip():
            raise _Invalid(name, f'@{name}: {entry!r} is not "role:<role>" or "user:<user id>"')
        found.add(f"{kind}:{who.strip()}")
    return tuple(sorted(found))


def _quorum(value: str | None) -> int:
    if value is None:
        return 1
    text = value.strip()
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise _Invalid("quorum", f"@quorum must be a whole number of at least 1, got {value!r}")
    return int(text)


def _duration(annotations: Mapping[str, str], name: str) -> timedelta:
    """An ISO 8601 duration (`PT30M`, `P1D`); other forms pydantic reads (seconds, `HH:MM`) are refused."""
    value = annotations[name].strip()
    problem = f'@{name} must be a positive ISO 8601 duration such as "PT30M", got {annotations[name]!r}'
    if not value.upper().startswith("P"):
        raise _Invalid(name, problem)
    try:
        duration = _DURATION.validate_python(value)
    except ValidationError:
        raise _Invalid(name, problem) from None
    if duration <= timedelta(0):
        raise _Invalid(name, problem)
    return duration


def _annotation_line(text: str, first_line: int, annotation: str) -> int:
    """The line of `@annotation` in the policy starting at `first_line`, else that first line."""
    lines = text.split("\n")
    for offset, content in enumerate(lines[first_line - 1 :]):
        if f"@{annotation}" in content:
            return first_line + offset
        if content.lstrip().startswith(("permit", "forbid")):
            break
    return first_line
