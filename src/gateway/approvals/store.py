"""The durable record of held calls: every change a compare-and-set, every change audited.

Replicas share the approvals table, and people vote through any of them, so no process may
trust what it read a moment ago. Every change is one `UPDATE … WHERE id = ? AND state = ? AND
version = ?`: of two writers that read the same version, exactly one changes the row, and the
other is told (`ApprovalConflict`) or, for a vote that can still count, reads again and retries.

Audit order: the change is committed first, then its audit event is written. Writing the event
first would log moves that then lose their race; committing first means a crash between the two
leaves a change without its event, which the row itself still shows (its state, timestamps and
`version`, which counts every change). An audit log that cannot take the event (the recorder is
not running) is logged as an error and does not undo the committed change.

The exact arguments are sealed (`sealing`) while the call may still run and dropped as soon as
it cannot: when it starts running (it never runs twice), is denied, expires or is cancelled. An
approved call runs when its agent repeats it; one whose agent never comes back would keep them
for ever, so an approval approved more than `collect_within` ago and not yet collected expires
unrun (`approved → expired`), found so by the sweeper or by whoever reads it first.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import ColumnElement, RowMapping, Select, Table, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.approvals.ids import uuid7
from gateway.approvals.model import OPEN_STATES, RAN_STATES, Approval, ApprovalKind, ApprovalState, Vote, can_move
from gateway.approvals.sealing import Sealer
from gateway.audit.recorder import AuditRecorder
from gateway.calls import Call
from gateway.coordination.questions import Question, answer_record
from gateway.errors import (
    ApprovalConflict,
    AuditUnavailable,
    InvalidAnswer,
    InvalidApprovalQuery,
    InvalidApprovalRequest,
    NotAnApprover,
    SelfApproval,
    UnknownApproval,
)
from gateway.executions import UNKNOWN_AFTER_CRASH, arguments_digest, bounded
from gateway.policy.hold import Requirement
from gateway.settings.notifications import WebhookEvent
from gateway.storage.database import Database
from gateway.storage.tables import ApprovalRow, ApprovalVoteRow

logger = logging.getLogger(__name__)

#: Who the audit log names for changes the gateway makes by itself (expiry, recovery, running the call).
GATEWAY_ACTOR = "gateway"
MAX_LIST_LIMIT = 500

_APPROVALS = cast(Table, ApprovalRow.__table__)
_VOTES = cast(Table, ApprovalVoteRow.__table__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ApprovalPage:
    """One page of a listing, newest first; `next_cursor` fetches the next (None: this was the last)."""

    approvals: tuple[Approval, ...]
    next_cursor: str | None


Notify = Callable[[Approval, WebhookEvent, Sequence[Vote]], None]
"""Told of a committed change people act on: (approval, event, votes so far); must not block."""

Listener = Callable[[Approval], None]
"""Told of every change this process commits, with the row as it now is; must neither block nor raise."""

#: Which committed changes the approvers' channels hear of, under which event name.
_EVENTS: dict[str, WebhookEvent] = {
    "created": "created",
    "escalated": "escalated",
    "approved": "decided",
    "denied": "decided",
    "cancelled": "decided",
    "expired": "expired",
    "answered": "decided",
}


class ApprovalStore:
    """Approvals of held calls in the gateway database.

    `max_result_bytes` bounds the outcome kept with an approval (longer results are cut and
    flagged). `vote_attempts` is how often a vote that lost a race to another vote is re-read
    and tried again before the voter is told to retry. `clock` gives aware UTC datetimes.
    `collect_within` is how long after its approval an approved call waits for its agent to
    repeat it before it expires unrun; a repeat in as long again hears that it did.
    """

    def __init__(
        self,
        database: Database,
        sealer: Sealer,
        *,
        recorder: AuditRecorder | None = None,
        clock: Callable[[], datetime] = _now,
        max_result_bytes: int = 64 * 1024,
        vote_attempts: int = 5,
        notify: Notify | None = None,
        collect_within: timedelta = timedelta(hours=1),
    ) -> None:
        if max_result_bytes < 0 or vote_attempts < 1:
            raise ValueError("max_result_bytes cannot be negative and vote_attempts must be at least 1")
        if collect_within <= timedelta(0):
            raise ValueError("collect_within must be a positive time")
        self._collect_within = collect_within
        self._db = database
        self._sealer = sealer
        self._recorder = recorder
        self._clock = clock
        self._max_result_bytes = max_result_bytes
        self._vote_attempts = vote_attempts
        self._notify = notify
        self._listeners: builtins.list[Listener] = []

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Have `listener` told of every change this process commits, until the returned function is called.

        Unlike `notify` (the approvers' channels, a few events), listeners hear every change, for
        live views such as the approvals API's event stream. Changes other processes commit are
        not heard here: those readers poll the table (each change bumps `version`).
        """
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    # -- making and reading ------------------------------------------------------------------

    async def create(
        self,
        call: Call,
        requirement: Requirement,
        *,
        policy_ids: Sequence[str],
        reasons: Sequence[str],
        redacted_arguments: Any,
        policy_version: str | None,
        question: Question | None = None,
    ) -> Approval:
        """Hold `call` (resolved: it names its connector) until `requirement` is met; it starts pending.

        With `question`, it is an agent's question (`gateway__ask_human`) that people answer
        (`answer`) rather than approve.

        Raises `ApprovalConflict` when an identical call (same agent, tool and arguments) already has
        an open approval, made since `find_repeat` looked: the caller joins that one instead.
        """
        if call.target is None or call.name is None:
            raise ValueError("only a resolved call (one with a target) can be held for approval")
        now = self._clock()
        approval_id = str(uuid7(now))
        principal = call.principal
        values: dict[str, Any] = {
            "id": approval_id,
            "agent": principal.agent,
            "user_id": principal.user,
            "roles": list(principal.roles),
            "tool": call.name,
            "connector": call.target.connector,
            "original_tool": call.target.original,
            "arguments_digest": arguments_digest(call.name, call.arguments),
            "redacted_arguments": redacted_arguments,
            "sealed_arguments": self._sealer.seal(approval_id, call.arguments),
            "reasoning": call.reasoning,
            "workflow_id": call.workflow,
            "session_id": call.origin.session_id,
            "policy_ids": list(policy_ids),
            "reasons": list(reasons),
            "approvers": list(requirement.approvers),
            "quorum": requirement.quorum,
            "state": ApprovalState.PENDING.value,
            "created_at": now,
            "expires_at": now + requirement.expires_in,
            "escalate_at": now + requirement.escalate_after if requirement.escalate_after is not None else None,
            "escalate_to": list(requirement.escalate_to),
            "escalated_at": None,
            "policy_version": policy_version,
            "decided_at": None,
            "executed_at": None,
            "executor": None,
            "finished_at": None,
            "result": None,
            "result_truncated": False,
            "version": 1,
            "ended_by": None,
            "end_comment": None,
            "kind": (ApprovalKind.QUESTION if question is not None else ApprovalKind.CALL).value,
            "question": question.json() if question is not None else None,
            "answer": None,
        }
        try:
            async with self._db.session() as session, session.begin():
                await session.execute(_APPROVALS.insert().values(values))
        except IntegrityError:
            # The unique index of open approvals: an identical call was held a moment before.
            raise ApprovalConflict(
                f"an identical call of {call.name} by {principal.agent} is already held; join its approval",
                state=ApprovalState.PENDING.value,
            ) from None
        approval = _approval(values)
        details = {
            "policy_ids": list(policy_ids),
            "arguments_digest": approval.arguments_digest,
            "approvers": list(requirement.approvers),
            "quorum": requirement.quorum,
            "expires_at": approval.expires_at.isoformat(),
            "policy_version": policy_version,
        }
        if question is not None:
            details.update(kind=ApprovalKind.QUESTION.value, question=question.json())
        await self._audit(approval, "created", None, actor=principal.agent, comment=requirement.reason, details=details)
        return approval

    async def get(self, approval_id: str) -> Approval:
        async with self._db.session() as session:
            row = (await session.execute(select(_APPROVALS).where(_APPROVALS.c.id == approval_id))).mappings().first()
        if row is None:
            raise UnknownApproval(f"no approval has the id {approval_id!r}")
        return _approval(row)

    async def votes(self, approval_id: str) -> tuple[Vote, ...]:
        """The votes cast on an approval, oldest first."""
        query = select(_VOTES).where(_VOTES.c.approval_id == approval_id).order_by(_VOTES.c.voted_at, _VOTES.c.user_id)
        async with self._db.session() as session:
            rows = (await session.execute(query)).mappings().all()
        return tuple(
            Vote(row["user_id"], tuple(row["roles"]), row["approve"], row["comment"], row["voted_at"]) for row in rows
        )

    async def find_repeat(
        self, agent: str, tool: str, digest: str, *, refused_since: datetime | None = None
    ) -> Approval | None:
        """The newest approval of this identical call still under way or that ran, for a retry to join.

        Denied, expired and cancelled ones are left out (a retry of those is a new request), except
        those whose `expires_at` is after `refused_since`: within the window an approval covered, a
        retry hears the decision people made instead of asking them again. Likewise an approved call
        that expired uncollected, for `collect_within` after it expired: a late retry hears why it
        did not run rather than being held anew at once. An answered question is found for
        `collect_within` after its answer: a repeat collects the answer, a later one asks anew.
        """
        states = [state.value for state in (*OPEN_STATES, *RAN_STATES)]
        wanted: ColumnElement[bool] = _APPROVALS.c.state.in_(states)
        if refused_since is not None:
            uncollected = and_(
                _APPROVALS.c.state == ApprovalState.EXPIRED.value,
                _APPROVALS.c.decided_at.is_not(None),
                _APPROVALS.c.finished_at > refused_since - self._collect_within,
            )
            answered = and_(
                _APPROVALS.c.state == ApprovalState.ANSWERED.value,
                _APPROVALS.c.finished_at > refused_since - self._collect_within,
            )
            wanted = or_(wanted, _APPROVALS.c.expires_at > refused_since, uncollected, answered)
        query = (
            select(_APPROVALS)
            .where(
                _APPROVALS.c.agent == agent,
                _APPROVALS.c.tool == tool,
                _APPROVALS.c.arguments_digest == digest,
                wanted,
            )
            .order_by(_APPROVALS.c.created_at.desc(), _APPROVALS.c.id.desc())
            .limit(1)
        )
        async with self._db.session() as session:
            row = (await session.execute(query)).mappings().first()
        return _approval(row) if row is not None else None

    async def count(self, *, state: ApprovalState) -> int:
        """How many approvals are in `state` (the console's "waiting for approval" figure)."""
        query = select(func.count()).select_from(_APPROVALS).where(_APPROVALS.c.state == state.value)
        async with self._db.session() as session:
            return int((await session.execute(query)).scalar_one())

    async def list(
        self,
        *,
        state: ApprovalState | None = None,
        limit: int = 50,
        cursor: str | None = None,
        agent: str | None = None,
        tool: str | None = None,
    ) -> ApprovalPage:
        """Approvals newest first, `limit` at a time; `cursor` is a previous page's `next_cursor`.

        `state`, `agent` and `tool` narrow the list (all that are given must match).
        """
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidApprovalQuery(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        query: Select[Any] = select(_APPROVALS)
        if state is not None:
            query = query.where(_APPROVALS.c.state == ApprovalState(state).value)
        if agent is not None:
            query = query.where(_APPROVALS.c.agent == agent)
        if tool is not None:
            query = query.where(_APPROVALS.c.tool == tool)
        if cursor is not None:
            created_at, last_id = _read_cursor(cursor)
            query = query.where(
                or_(
                    _APPROVALS.c.created_at < created_at,
                    and_(_APPROVALS.c.created_at == created_at, _APPROVALS.c.id < last_id),
                )
            )
        query = query.order_by(_APPROVALS.c.created_at.desc(), _APPROVALS.c.id.desc()).limit(limit + 1)
        async with self._db.session() as session:
            rows = (await session.execute(query)).mappings().all()
        found = tuple(_approval(row) for row in rows[:limit])
        next_cursor = _cursor(found[-1]) if len(rows) > limit else None
        return ApprovalPage(found, next_cursor)

    # -- people deciding ---------------------------------------------------------------------

    async def vote(
        self, approval_id: str, *, user: str, roles: Sequence[str], approve: bool, comment: str | None = None
    ) -> Approval:
        """Record `user`'s vote; the approval is approved at quorum, and denied by one approver's denial.

        Neither the agent that made the call nor the user it acts for may vote on it, and only
        people the approvers name count. A person's second vote the same way counts once; an
        approval followed by a denial from the same person is a denial.
        """
        _storable(comment, "comment")
        held = tuple(roles)
        for _ in range(self._vote_attempts):
            approval = await self.get(approval_id)
            if approval.kind is ApprovalKind.QUESTION:
                raise InvalidApprovalRequest(
                    f"{approval_id} is a question an agent asked, not a held call: answer it "
                    f"(gateway approvals answer {approval_id} --option ... | --text ...) rather than approve or deny it"
                )
            if user == approval.agent or (approval.user is not None and user == approval.user):
                raise SelfApproval(
                    f"{user} made approval {approval_id}'s call or is the user it acts for, and cannot decide it; "
                    "withdraw it by cancelling instead"
                )
            if not approval.approver_for(user, held):
                raise NotAnApprover(
                    f"{user} is not among the approvers of approval {approval_id} ({', '.join(approval.approvers)})"
                )
            approval = await self.expire_if_due(approval)
            if approval.state is not ApprovalState.PENDING:
                raise ApprovalConflict(f"approval {approval_id} is already {approval.state}", state=approval.state)
            votes = await self.votes(approval_id)
            earlier = next((vote for vote in votes if vote.user == user), None)
            if earlier is not None and earlier.approve == approve:
                return approval
            if approve:
                approving = 1 + sum(1 for vote in votes if vote.approve)
                target = ApprovalState.APPROVED if approving >= approval.quorum else ApprovalState.PENDING
            else:
                approving = sum(1 for vote in votes if vote.approve and vote.user != user)
                target = ApprovalState.DENIED
            now = self._clock()
            changes: dict[str, Any] = {}
            if target is not ApprovalState.PENDING:
                changes["decided_at"] = now
            if target is ApprovalState.DENIED:
                changes["sealed_arguments"] = None
            vote_row = {"roles": list(held), "approve": approve, "comment": comment, "voted_at": now}
            async with self._db.session() as session, session.begin():
                moved = await self._compare_and_set(session, approval, target, changes)
                if moved is None:
                    await session.rollback()
                    continue  # another vote or change came first: read again and count again
                if earlier is None:
                    await session.execute(_VOTES.insert().values(approval_id=approval_id, user_id=user, **vote_row))
                else:
                    await session.execute(
                        update(_VOTES)
                        .where(_VOTES.c.approval_id == approval_id, _VOTES.c.user_id == user)
                        .values(**vote_row)
                    )
            details = {"approve": approve, "approvals": approving, "quorum": approval.quorum, "roles": list(held)}
            await self._audit(moved, "vote", approval.state, actor=user, comment=comment, details=details)
            if target is not approval.state:
                await self._audit(moved, str(target), approval.state, actor=user)
            return moved
        raise ApprovalConflict(
            f"approval {approval_id} kept changing while {user} voted; read it again and vote again",
            state=None,
        )

    async def answer(
        self, question_id: str, *, user: str, roles: Sequence[str], option: str | None = None, text: str | None = None
    ) -> Approval:
        """`user`'s answer to an agent's question: one of its options (with an optional note), or words.

        Only people its approvers name may answer, never the agent that asked nor the user it
        acts for; the first answer settles it, and a later one hears who answered first.
        """
        approval = await self.get(question_id)
        if approval.kind is not ApprovalKind.QUESTION or approval.question is None:
            raise InvalidAnswer(f"approval {question_id} is a held call, not a question: approve or deny it instead")
        if user == approval.agent or (approval.user is not None and user == approval.user):
            raise SelfApproval(
                f"{user} asked question {question_id} or is the user its agent acts for, and cannot answer it"
            )
        if not approval.approver_for(user, tuple(roles)):
            raise NotAnApprover(
                f"{user} is not among the people who answer question {question_id} ({', '.join(approval.approvers)})"
            )
        answer, chosen = Question.stored(approval.question).accept(option=option, text=text)
        approval = await self.expire_if_due(approval)
        if approval.state is not ApprovalState.PENDING:
            by = f" by {approval.answer['answered_by']}" if approval.answer else ""
            if not by and approval.ended_by:  # cancelled (or its agent suspended): who ended it, and why
                by = f" by {approval.ended_by}" + (f": {approval.end_comment}" if approval.end_comment else "")
            raise ApprovalConflict(f"question {question_id} is already {approval.state}{by}", state=approval.state)
        now = self._clock()
        record = answer_record(answer, chosen, user, now)
        changes = {
            "answer": record,
            "decided_at": now,
            "finished_at": now,
            "sealed_arguments": None,
            "ended_by": user,
            "end_comment": answer,
        }
        details = {"option": chosen, "answer": answer, "roles": list(roles)}
        return await self._move(
            approval, ApprovalState.ANSWERED, changes, actor=user, action="answered", details=details
        )

    async def cancel(self, approval_id: str, *, actor: str, comment: str | None = None) -> Approval:
        """Withdraw a pending approval (its agent gave up, or an operator stops it); its arguments are dropped.

        Who cancelled it and why stay with it: its agent is told them.
        """
        _storable(comment, "comment")
        approval = await self.get(approval_id)
        return await self._move(
            approval,
            ApprovalState.CANCELLED,
            {"finished_at": self._clock(), "sealed_arguments": None, "ended_by": actor, "end_comment": comment},
            actor=actor,
            comment=comment,
        )

    async def override(
        self, approval_id: str, *, actor: str, approve: bool, reason: str, comment: str | None = None
    ) -> Approval:
        """An operator decides a pending approval alone, outside its approvers and quorum.

        For when the people named cannot be reached and the call must run or be stopped now.
        Because it sets aside the separation of duties the approvers stand for, it is its own
        audit event (`override`, with `reason`) before the move itself, so a search of the log
        for overrides finds every one. No vote is recorded: nobody among the approvers voted.
        """
        _storable(reason, "reason")
        _storable(comment, "comment")
        approval = await self.expire_if_due(await self.get(approval_id))
        if approval.kind is ApprovalKind.QUESTION:
            raise InvalidApprovalRequest(f"{approval_id} is a question: answer it, or cancel it, rather than decide it")
        if approval.state is not ApprovalState.PENDING:
            raise ApprovalConflict(f"approval {approval_id} is already {approval.state}", state=approval.state)
        target = ApprovalState.APPROVED if approve else ApprovalState.DENIED
        changes: dict[str, Any] = {"decided_at": self._clock()}
        if not approve:
            # No vote names who denied it: the approval keeps it, for its agent to hear.
            changes.update(sealed_arguments=None, ended_by=actor, end_comment=comment or reason)
        async with self._db.session() as session, session.begin():
            moved = await self._compare_and_set(session, approval, target, changes)
        if moved is None:
            current = await self.get(approval_id)
            raise ApprovalConflict(
                f"approval {approval_id} is {current.state} (changed by another writer), not {approval.state}",
                state=current.state,
            )
        details = {"approve": approve, "override": True, "approvers": list(approval.approvers)}
        await self._audit(moved, "override", approval.state, actor=actor, comment=reason, details=details)
        await self._audit(moved, str(target), approval.state, actor=actor, comment=comment)
        return moved

    # -- running the call --------------------------------------------------------------------

    async def begin_execution(self, approval_id: str, *, executor: str | None = None) -> tuple[Approval, Any]:
        """Mark an approved call as running and hand back its exact arguments, once.

        The sealed copy is dropped in the same change: whatever happens next, the call never
        runs twice from this approval. `executor` names the process running it, for recovery.
        One approved longer ago than `collect_within` expires instead, and is refused like any
        approval that is not approved.
        """
        approval = await self.expire_if_due(await self.get(approval_id))
        if approval.state is not ApprovalState.APPROVED or approval.sealed_arguments is None:
            raise ApprovalConflict(
                f"approval {approval_id} is {approval.state}, not approved, so its call cannot run",
                state=approval.state,
            )
        arguments = self._sealer.open(approval.id, approval.sealed_arguments)
        changes = {"executed_at": self._clock(), "executor": executor, "sealed_arguments": None}
        moved = await self._move(approval, ApprovalState.EXECUTING, changes, actor=executor or GATEWAY_ACTOR)
        return moved, arguments

    def arguments_of(self, approval: Approval) -> Any:
        """The exact arguments of an approved call not yet started, to make the call again (nothing changes).

        Only `begin_execution` lets it run; this lets a request that is not the held one (a task
        being collected) rebuild the call that `begin_execution` then starts.
        """
        if approval.sealed_arguments is None:
            raise ApprovalConflict(
                f"approval {approval.id} is {approval.state}: its arguments are gone", state=approval.state
            )
        return self._sealer.open(approval.id, approval.sealed_arguments)

    async def finish(self, approval_id: str, *, succeeded: bool, result: bytes) -> Approval:
        """Record how the running call ended, keeping at most `max_result_bytes` of its result."""
        approval = await self.get(approval_id)
        kept, truncated = bounded(result, self._max_result_bytes)
        target = ApprovalState.SUCCEEDED if succeeded else ApprovalState.FAILED
        changes = {
            "finished_at": self._clock(),
            "result": kept,
            "result_truncated": truncated,
            "sealed_arguments": None,
        }
        details = {"result_bytes": len(result), "result_truncated": truncated}
        return await self._move(approval, target, changes, actor=approval.executor or GATEWAY_ACTOR, details=details)

    # -- the gateway's own upkeep ------------------------------------------------------------

    async def expire_due(self, now: datetime | None = None) -> builtins.list[Approval]:
        """Expire every pending approval past its `expires_at`, and every approved one nobody collected
        within `collect_within`; those another writer changed first are skipped."""
        moment = now or self._clock()
        query = select(_APPROVALS).where(
            or_(
                and_(_APPROVALS.c.state == ApprovalState.PENDING.value, _APPROVALS.c.expires_at <= moment),
                and_(
                    _APPROVALS.c.state == ApprovalState.APPROVED.value,
                    _APPROVALS.c.decided_at <= moment - self._collect_within,
                ),
            )
        )
        expired: builtins.list[Approval] = []
        for approval in await self._select(query):
            try:
                expired.append(await self._expire(approval, moment))
            except ApprovalConflict:
                continue
        return expired

    async def due_for_escalation(self, now: datetime | None = None) -> builtins.list[Approval]:
        """Pending approvals past their `escalate_at` that nobody has escalated yet, oldest first."""
        moment = now or self._clock()
        query = (
            select(_APPROVALS)
            .where(
                _APPROVALS.c.state == ApprovalState.PENDING.value,
                _APPROVALS.c.escalate_at <= moment,
                _APPROVALS.c.escalated_at.is_(None),
                _APPROVALS.c.expires_at > moment,
            )
            .order_by(_APPROVALS.c.escalate_at)
        )
        return await self._select(query)

    async def mark_escalated(self, approval_id: str) -> Approval:
        """Record that the escalation was sent; of replicas escalating at once, the losers get `ApprovalConflict`.

        Call it before notifying anyone: the winner notifies, so people are told once.
        """
        approval = await self.get(approval_id)
        if approval.escalated_at is not None:
            raise ApprovalConflict(f"approval {approval_id} was already escalated", state=approval.state)
        return await self._move(
            approval,
            ApprovalState.PENDING,
            {"escalated_at": self._clock()},
            actor=GATEWAY_ACTOR,
            action="escalated",
            details={"escalate_to": list(approval.escalate_to)},
        )

    async def recover_after_crash(self, *, executor: str | None = None) -> builtins.list[Approval]:
        """Mark calls left running as `unknown`: whether the backend ran them cannot be known, so none re-runs.

        With `executor`, only that process's calls (a replica restarting leaves other live
        replicas' calls alone); without it, every running call, for a single gateway.
        """
        query = select(_APPROVALS).where(_APPROVALS.c.state == ApprovalState.EXECUTING.value)
        if executor is not None:
            query = query.where(_APPROVALS.c.executor == executor)
        recovered: builtins.list[Approval] = []
        for approval in await self._select(query):
            try:
                recovered.append(
                    await self._move(
                        approval,
                        ApprovalState.UNKNOWN,
                        {"finished_at": self._clock(), "sealed_arguments": None},
                        actor=GATEWAY_ACTOR,
                        comment=UNKNOWN_AFTER_CRASH,
                    )
                )
            except ApprovalConflict:
                continue
        return recovered

    # -- moves -------------------------------------------------------------------------------

    async def expire_if_due(self, approval: Approval) -> Approval:
        """`approval` expired when its time has come, else as it is (or as another writer left it, first).

        For whoever reads an approval to act on it: a vote, or a request waiting on it, must not
        wait for the sweeper to see that its time ran out.
        """
        if self._due(approval, self._clock()):
            try:
                return await self._expire(approval, self._clock())
            except ApprovalConflict:
                return await self.get(approval.id)
        return approval

    def _due(self, approval: Approval, moment: datetime) -> bool:
        """Pending past its `expires_at`, or approved and not collected within `collect_within`."""
        if approval.state is ApprovalState.PENDING:
            return moment >= approval.expires_at
        if approval.state is ApprovalState.APPROVED and approval.decided_at is not None:
            return moment >= approval.decided_at + self._collect_within
        return False

    async def _expire(self, approval: Approval, moment: datetime) -> Approval:
        changes = {"finished_at": moment, "sealed_arguments": None}
        if approval.state is not ApprovalState.APPROVED:
            return await self._move(approval, ApprovalState.EXPIRED, changes, actor=GATEWAY_ACTOR)
        return await self._move(
            approval,
            ApprovalState.EXPIRED,
            changes,
            actor=GATEWAY_ACTOR,
            comment=f"approved but not collected within {self._collect_within}; it never ran",
            details={"uncollected": True, "collect_within_seconds": self._collect_within.total_seconds()},
        )

    async def _move(
        self,
        approval: Approval,
        target: ApprovalState,
        changes: Mapping[str, Any],
        *,
        actor: str,
        comment: str | None = None,
        action: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Approval:
        """Compare-and-set `approval` to `target` in a transaction of its own, then audit it."""
        async with self._db.session() as session, session.begin():
            moved = await self._compare_and_set(session, approval, target, changes)
        if moved is None:
            current = await self.get(approval.id)
            raise ApprovalConflict(
                f"approval {approval.id} is {current.state} (changed by another writer), not {approval.state}",
                state=current.state,
            )
        await self._audit(moved, action or str(target), approval.state, actor=actor, comment=comment, details=details)
        return moved

    @staticmethod
    async def _compare_and_set(
        session: AsyncSession, approval: Approval, target: ApprovalState, changes: Mapping[str, Any]
    ) -> Approval | None:
        """The row after the change, or None when it is no longer in the state and version read.

        Only a pending approval changes without moving (a vote short of quorum, an escalation);
        an ended one never changes again.
        """
        staying = target is approval.state is ApprovalState.PENDING
        if not staying and not can_move(approval.state, target):
            raise ApprovalConflict(
                f"approval {approval.id} is {approval.state} and cannot become {target}", state=approval.state
            )
        statement = (
            update(_APPROVALS)
            .where(
                _APPROVALS.c.id == approval.id,
                _APPROVALS.c.state == approval.state.value,
                _APPROVALS.c.version == approval.version,
            )
            .values(state=target.value, version=approval.version + 1, **changes)
            .returning(*_APPROVALS.c)
        )
        row = (await session.execute(statement)).mappings().first()
        return _approval(row) if row is not None else None

    async def _select(self, query: Select[Any]) -> builtins.list[Approval]:
        async with self._db.session() as session:
            return [_approval(row) for row in (await session.execute(query)).mappings().all()]

    async def _audit(
        self,
        approval: Approval,
        action: str,
        previous: ApprovalState | None,
        *,
        actor: str | None,
        comment: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Tell the listeners of a committed change and the approvers' channels of the ones people act on; audit it."""
        for listener in tuple(self._listeners):
            try:
                listener(approval)
            except Exception:  # boundary: a broken live view must not fail a committed change
                logger.exception("approval %s: a change listener failed", approval.id)
        event = _EVENTS.get(action)
        if self._notify is not None and event is not None:
            self._notify(approval, event, await self.votes(approval.id))
        if self._recorder is None:
            return
        try:
            await self._recorder.record_approval_event(
                approval.id,
                action,
                state=approval.state.value,
                previous_state=previous.value if previous is not None else None,
                actor=actor,
                agent=approval.agent,
                user=approval.user,
                tool=approval.tool,
                workflow=approval.workflow,
                comment=comment,
                details=details,
            )
        except AuditUnavailable as error:
            # The change is committed and stays: the row is the record of truth for approvals.
            logger.error("approval %s: %s was committed but not audited: %s", approval.id, action, error)


def _storable(text: str | None, what: str) -> None:
    """PostgreSQL cannot store a NUL character in text: refuse it with a reason, not a database error."""
    if text is not None and "\x00" in text:
        raise InvalidApprovalRequest(
            f"the {what} contains a NUL character (\\u0000), which cannot be stored; remove it"
        )


def _approval(row: Mapping[str, Any] | RowMapping) -> Approval:
    return Approval(
        id=row["id"],
        agent=row["agent"],
        user=row["user_id"],
        roles=tuple(row["roles"]),
        tool=row["tool"],
        connector=row["connector"],
        original_tool=row["original_tool"],
        arguments_digest=row["arguments_digest"],
        redacted_arguments=row["redacted_arguments"],
        sealed_arguments=row["sealed_arguments"],
        reasoning=row["reasoning"],
        workflow=row["workflow_id"],
        session_id=row["session_id"],
        policy_ids=tuple(row["policy_ids"]),
        reasons=tuple(row["reasons"]),
        approvers=tuple(row["approvers"]),
        quorum=row["quorum"],
        state=ApprovalState(row["state"]),
        created_at=_aware(row["created_at"]),
        expires_at=_aware(row["expires_at"]),
        escalate_at=_aware(row["escalate_at"]),
        escalate_to=tuple(row["escalate_to"]),
        escalated_at=_aware(row["escalated_at"]),
        policy_version=row["policy_version"],
        decided_at=_aware(row["decided_at"]),
        executed_at=_aware(row["executed_at"]),
        executor=row["executor"],
        finished_at=_aware(row["finished_at"]),
        result=row["result"],
        result_truncated=bool(row["result_truncated"]),
        version=row["version"],
        ended_by=row["ended_by"],
        end_comment=row["end_comment"],
        kind=ApprovalKind(row["kind"] or ApprovalKind.CALL.value),
        question=row["question"],
        answer=row["answer"],
    )


def _aware(value: Any) -> Any:
    """Values built in Python are already aware; those read back pass through `UtcDateTime` too."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _cursor(last: Approval) -> str:
    payload = orjson.dumps([last.created_at.isoformat(), last.id])
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def _read_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created_at, last_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = datetime.fromisoformat(created_at)
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidApprovalQuery("the cursor is not one a listing of approvals returned") from None
    if moment.tzinfo is None or not isinstance(last_id, str):
        raise InvalidApprovalQuery("the cursor is not one a listing of approvals returned")
    return moment, last_id
