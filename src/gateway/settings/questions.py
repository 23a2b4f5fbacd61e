"""Questions agents ask people (`gateway__ask_human`): gateway.toml's `[questions]` table."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from gateway.settings.base import SettingsModel

_APPROVER = re.compile(r"(?:(role|user):)?([^\s:][^\s]*)")


def _approver_entries(entries: tuple[str, ...]) -> tuple[str, ...]:
    """`NAME` means the role NAME; `role:NAME` and `user:ID` are as approval policies write them."""
    normalised: list[str] = []
    for entry in entries:
        match = _APPROVER.fullmatch(entry.strip())
        if match is None:
            raise ValueError(f"{entry!r} is not a role name, 'role:NAME' or 'user:ID'")
        normalised.append(f"{match.group(1) or 'role'}:{match.group(2)}")
    return tuple(dict.fromkeys(normalised))


class QuestionSettings(SettingsModel):
    """Who answers the questions agents ask, and how long a question waits, when no approval policy says so.

    An approval policy that matches `gateway__ask_human` takes precedence: its `@approvers`,
    `@expires` and escalation route the question instead (a question needs one answer, so
    `@quorum` does not apply).
    """

    approvers: tuple[str, ...] = Field(
        default=(),
        description=(
            'Who answers questions: role names (`"support-leads"`), or `"role:NAME"` / `"user:ID"` entries. '
            "Without any, and without an approval policy matching `gateway__ask_human`, asking is refused."
        ),
    )
    expires: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds a question waits for an answer; after that the agent is told nobody answered in time.",
    )
    escalate_after: float | None = Field(
        default=None,
        gt=0,
        description="Seconds after which an unanswered question is escalated to `escalate_to` (none: never).",
    )
    escalate_to: tuple[str, ...] = Field(
        default=(), description="Who is told of an escalated question: role names, `role:NAME` or `user:ID`."
    )

    @field_validator("approvers", "escalate_to")
    @classmethod
    def _entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _approver_entries(value)

    @model_validator(mode="after")
    def _escalation_names_someone(self) -> QuestionSettings:
        if self.escalate_after is not None and not self.escalate_to:
            raise ValueError("escalate_after needs escalate_to: say who is told when nobody answers in time")
        return self
