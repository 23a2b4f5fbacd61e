"""What an approval is: its states and the moves between them, the stored record, and what a policy asks for.

The transitions are data (`TRANSITIONS`) so that the store, the API and the docs read one table,
and a move the table does not hold is refused before it reaches the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from gateway.executions import ExecutionState
from gateway.policy.hold import parse_approver


class ApprovalState(StrEnum):
    """Where a held call stands: waiting for people, cleared to run, running, or ended."""

    PENDING = "pending"
    APPROVED = "approved"
    #: Running, and how it ended: the states every call that must not run twice goes through (`ExecutionState`).
    EXECUTING = ExecutionState.EXECUTING.value
    SUCCEEDED = ExecutionState.SUCCEEDED.value
    FAILED = ExecutionState.FAILED.value
    #: The gateway stopped while the call ran: whether the backend did it is not known, so it is never re-run.
    UNKNOWN = ExecutionState.UNKNOWN.value
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    #: A question (`gateway__ask_human`) a person answered: its answer is the asking call's result.
    ANSWERED = "answered"

    @property
    def ended(self) -> bool:
        """Nothing can happen to it any more."""
        return not TRANSITIONS[self]


#: Every allowed move; a state with no moves has ended.
TRANSITIONS: dict[ApprovalState, frozenset[ApprovalState]] = {
    ApprovalState.PENDING: frozenset(
        {
            ApprovalState.APPROVED,
            ApprovalState.DENIED,
            ApprovalState.EXPIRED,
            ApprovalState.CANCELLED,
            ApprovalState.ANSWERED,
        }
    ),
    #: Expired when its agent does not repeat the call within the collection window (`collect_within`).
    ApprovalState.APPROVED: frozenset({ApprovalState.EXECUTING, ApprovalState.EXPIRED}),
    ApprovalState.EXECUTING: frozenset({ApprovalState.SUCCEEDED, ApprovalState.FAILED, ApprovalState.UNKNOWN}),
    ApprovalState.SUCCEEDED: frozenset(),
    ApprovalState.FAILED: frozenset(),
    ApprovalState.UNKNOWN: frozenset(),
    ApprovalState.DENIED: frozenset(),
    ApprovalState.EXPIRED: frozenset(),
    ApprovalState.CANCELLED: frozenset(),
    ApprovalState.ANSWERED: frozenset(),
}

#: States in which the call is still under way: a repeat of it must wait for this one, not make another.
OPEN_STATES = frozenset({ApprovalState.PENDING, ApprovalState.APPROVED, ApprovalState.EXECUTING})
#: States in which the call ran (or may have): a retry of it must learn that, not run it again.
RAN_STATES = frozenset({ApprovalState.SUCCEEDED, ApprovalState.FAILED, ApprovalState.UNKNOWN})


def can_move(source: ApprovalState, target: ApprovalState) -> bool:
    return target in TRANSITIONS[source]


class ApprovalKind(StrEnum):
    """What people are asked: to let a held call run, or to answer an agent's question (`gateway__ask_human`).

    Both are one record in one table, so a question is routed, expired, escalated, notified,
    woken across processes, listed in the inbox and cancelled exactly as a held call is.
    """

    CALL = "call"
    QUESTION = "question"


@dataclass(frozen=True, slots=True)
class Vote:
    """One person's vote as recorded: their roles at the time, so a later change of roles does not rewrite it."""

    user: str
    roles: tuple[str, ...]
    approve: bool
    comment: str | None
    time: datetime


@dataclass(frozen=True, slots=True)
class Approval:
    """One stored approval, as read: never changed in place; every change is a new row version.

    `sealed_arguments` is the encrypted exact arguments, None once the call can no longer run.
    `ended_by` and `end_comment` say who ended it without a vote (a cancellation, an admin's
    denial) and what they said, for its agent to hear; None otherwise, and for approvals ended
    before the gateway kept them.
    """

    id: str
    agent: str
    user: str | None
    roles: tuple[str, ...]
    tool: str
    connector: str
    original_tool: str
    arguments_digest: str
    redacted_arguments: Any
    sealed_arguments: bytes | None
    reasoning: str | None
    workflow: str | None
    session_id: str | None
    policy_ids: tuple[str, ...]
    reasons: tuple[str, ...]
    approvers: tuple[str, ...]
    quorum: int
    state: ApprovalState
    created_at: datetime
    expires_at: datetime
    escalate_at: datetime | None
    escalate_to: tuple[str, ...]
    escalated_at: datetime | None
    policy_version: str | None
    decided_at: datetime | None
    executed_at: datetime | None
    executor: str | None
    finished_at: datetime | None
    result: bytes | None
    result_truncated: bool
    version: int
    ended_by: str | None = None
    end_comment: str | None = None
    kind: ApprovalKind = ApprovalKind.CALL
    #: A question's text, options and urgency (`{"text", "options", "urgency"}`); None for a held call.
    question: Any = None
    #: A question's answer once given (`{"answer", "option", "answered_by", "answered_at"}`).
    answer: Any = None

    def approver_for(self, user: str, roles: tuple[str, ...]) -> bool:
        """Whether `user` (holding `roles`) is among the people this approval's approvers name."""
        for entry in self.approvers:
            kind, name = parse_approver(entry)
            if (kind == "user" and name == user) or (kind == "role" and name in roles):
                return True
        return False
