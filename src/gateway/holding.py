"""The hold stage: a call the approval policies hold waits for people, then runs once.

The pipeline asks `HoldStage.clear` after the access policies allowed a call that an approval
policy holds. The call becomes (or finds) a durable approval, keyed by the agent, the tool and
the digest of its arguments, so repeating the identical call finds the same approval:

- while it is pending, the request waits up to `[approvals] max_wait` (with progress
  notifications when the agent asked for them); past that, or when the agent said not to wait,
  the agent is told the call is pending, who must decide and how to collect it (`ApprovalPending`);
- once approved, the first request to get there moves it to `executing` (a compare-and-set, so
  two requests or two replicas never both run it), the access policies are asked again with
  `context.approval` filled in, and the call runs with the exact arguments that were approved;
- once it ran, repeating the call returns the stored outcome instead of running it again;
- denied or cancelled, the agent hears who decided and why (`ApprovalRefused`), on every repeat
  until the time the approval would have expired; a repeat after that asks people anew. A call
  that expires while its request waits hears that it expired.

Nothing here is in-memory state: any replica serves any step, and a gateway restarted while a
call waited finds it in the database.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import anyio
import orjson
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.approvals import OPEN_STATES, Approval, ApprovalKind, ApprovalState, ApprovalStore, Vote
from gateway.approvals.wakeups import ApprovalWakeups
from gateway.audit import Redactor
from gateway.calls import Call, Origin
from gateway.catalog import ToolEntry
from gateway.connectors.base import JsonObject, ProgressCallback
from gateway.coordination.questions import (
    Question,
    answer_result,
    asks_human,
    pending_message,
    question_hold,
    unanswered_message,
)
from gateway.errors import (
    ApprovalConflict,
    ApprovalPending,
    ApprovalRefused,
    ApprovalsNotConfigured,
    PolicyDenied,
    QuestionsNotRouted,
    UnknownApproval,
)
from gateway.executions import arguments_digest, error_result, kept_result, outcome_bytes
from gateway.policy import ApprovalContext, Decision, HoldDecision, PolicyDecisions
from gateway.request_kinds import Aimed
from gateway.settings.approvals import ApprovalSettings
from gateway.settings.questions import QuestionSettings

#: `params._meta` key an agent sets (to `true`) to hear at once that its call is held, without waiting.
NO_WAIT_META_KEY = "io.autonomy-gateway/no-wait"
#: The MCP tasks extension: a client that declares it on a request gets a held call back as a task.
TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
#: Where a 2026-07-28 request carries its client's capabilities (`params._meta`).
CLIENT_CAPABILITIES_META_KEY = "io.modelcontextprotocol/clientCapabilities"

#: Added to the description of a tool whose calls approval policies may hold.
APPROVAL_NOTE = (
    "\n\nRequires approval: a call may wait for a person to approve it before it runs. If the answer says it "
    "is pending, repeat the identical call later to get its outcome; it never runs twice."
)


@dataclass(frozen=True, slots=True)
class Cleared:
    """A held call that may run now: the approval to finish, the call with its approved arguments, and
    the access decision taken again with `context.approval`."""

    approval_id: str
    aimed: Aimed[ToolEntry]
    decision: Decision


@dataclass(frozen=True, slots=True)
class Collected:
    """The stored outcome of a held call that already ran: what a repeat of the identical call returns."""

    approval_id: str
    result: JsonObject


@dataclass(frozen=True, slots=True)
class HeldTask:
    """A held call as its task shows it: the approval, and the outcome once there is one (None before).

    The outcome is the result the call answered, or the refusal (denied, expired, cancelled,
    unknown) the agent hears instead.
    """

    approval: Approval
    outcome: JsonObject | ApprovalRefused | None
    #: Seconds the client is asked to wait before it asks again (`[approvals] task_poll_interval`).
    poll_interval: float


class HoldStage:
    """Turns a hold into an approval, waits for it, and lets the approved call run exactly once."""

    def __init__(
        self,
        store: ApprovalStore | None,
        decisions: PolicyDecisions,
        redactor: Redactor,
        settings: ApprovalSettings,
        *,
        executor: str,
        policy_version: Callable[[], str | None] = lambda: None,
        wakeups: ApprovalWakeups | None = None,
        questions: QuestionSettings | None = None,
    ) -> None:
        """`wakeups` rings a waiting request when its approval changes; without, only this store's changes do.

        `questions` routes the questions agents ask (`gateway__ask_human`) that no approval policy routes.
        """
        self._questions = questions if questions is not None else QuestionSettings()
        self._store = store
        self._wakeups = wakeups if wakeups is not None else ApprovalWakeups(store)
        self._decisions = decisions
        self._redactor = redactor
        self._settings = settings
        self._executor = executor
        self._policy_version = policy_version

    def routed(self, aimed: Aimed[Any], hold: HoldDecision) -> HoldDecision:
        """The hold of an allowed call: as the approval policies decided, except that a question always waits.

        Every `gateway__ask_human` call is held, as a question for the people a policy or
        `[questions]` names (see `coordination/questions.py`); any other call costs two string
        comparisons here.
        """
        if isinstance(aimed.entry, ToolEntry) and asks_human(aimed.entry):
            return question_hold(hold, self._questions)
        return hold

    async def clear(
        self, aimed: Aimed[ToolEntry], hold: HoldDecision, on_progress: ProgressCallback | None
    ) -> Cleared | Collected:
        """Wait until the held call may run, or return what it returned when it ran before.

        Raises `ApprovalPending` (not decided within the wait), `ApprovalRefused` (denied,
        expired, cancelled, or its earlier run failed), `ApprovalsNotConfigured`, or
        `PolicyDenied` when the access policies no longer allow the approved call.
        """
        call, entry = aimed.call, aimed.entry
        requirement = hold.requirement
        question = Question.from_arguments(call.arguments) if asks_human(entry) else None
        if question is not None and requirement is None:
            raise QuestionsNotRouted(
                "nobody is named to answer questions, so it was not asked. Operators: set [questions] approvers "
                '(e.g. approvers = ["support-leads"]) or add an approval policy with @approvers on gateway__ask_human'
            )
        assert requirement is not None, "a held call has a requirement"
        if self._store is None:
            raise ApprovalsNotConfigured(
                f"'{entry.exposed}' needs {requirement.describe()} before it runs, and this gateway has no "
                "[approvals] sealing key to keep it while people decide, so it was refused; nothing ran. "
                "Operators: set [approvals] sealing_keys."
            )
        store = self._store
        approval = await self._repeat_of(call, entry)
        if approval is None:
            try:
                approval = await store.create(
                    call,
                    requirement,
                    policy_ids=hold.policy_ids,
                    reasons=requirement.reasons,
                    redacted_arguments=self._shown(call.arguments, entry),
                    policy_version=self._policy_version(),
                    question=question,
                )
            except ApprovalConflict:
                # An identical call made at the same moment holds it already: wait on that one.
                joined = await self._repeat_of(call, entry)
                if joined is None:
                    raise
                approval = joined
        wait = 0.0 if _no_wait(call) else self._settings.max_wait
        approval = await self._wait(approval, wait, on_progress)
        if approval.state is ApprovalState.APPROVED:
            try:
                return await self._begin(aimed, approval)
            except ApprovalConflict:
                # Another request (or replica) started it first: follow that run instead.
                approval = await self._wait(await store.get(approval.id), wait, on_progress)
        return await self._settled(entry.exposed, approval)

    def _shown(self, arguments: Any, entry: ToolEntry) -> Any:
        """What approvers see of the arguments: redacted, and only the start of a very large document."""
        redacted = self._redactor.redact_arguments(arguments, tool=entry.exposed)
        return redacted.value if redacted.value is not None else redacted.preview

    def listed(self, origin: Origin, entry: ToolEntry) -> Mapping[str, Any]:
        """The tool's definition as an agent lists it: saying so when its calls may wait for approval.

        A model that knows a tool can be held plans for it (tells its user, does not retry at once);
        `[approvals] describe_in_listing = false` lists definitions exactly as the backend gave them.
        `gateway__ask_human` is left as it is: its own description says it waits for a person's
        answer, and "a person approves it before it runs" would only mislead the model.
        """
        if not self._settings.describe_in_listing or asks_human(entry) or not self._decisions.may_hold(origin, entry):
            return entry.definition
        definition = dict(entry.definition)
        definition["description"] = (str(definition.get("description") or "").rstrip() + APPROVAL_NOTE).lstrip()
        return definition

    async def finished(self, cleared: Cleared, *, result: JsonObject | None, error: BaseException | None) -> None:
        """Store how the approved call ended, so a repeat collects it and nothing runs it again."""
        assert self._store is not None
        succeeded, kept = outcome_bytes(result, error, failure="the approved call failed")
        with anyio.CancelScope(shield=True):  # a client that went away must not leave it `executing`
            await self._store.finish(cleared.approval_id, succeeded=succeeded, result=kept)

    # -- a held call as a task (the MCP tasks extension) -----------------------------------------

    async def owned(self, agent: str, approval_id: str) -> Approval:
        """`agent`'s held call `approval_id`: another agent's is unknown to it, as one that never was."""
        unknown = UnknownApproval(f"no task has the id {approval_id!r}")
        if self._store is None:
            raise unknown
        try:
            approval = await self._store.get(approval_id)
        except UnknownApproval:
            raise unknown from None
        if approval.agent != agent:
            raise unknown
        return approval

    def approved_call(self, origin: Origin, approval: Approval) -> Call:
        """The held call made again by `origin`, with the exact arguments people approved, to run it now."""
        assert self._store is not None
        arguments = self._store.arguments_of(approval)
        return Call("tools/call", origin, approval.tool, arguments, None, approval.reasoning, approval.workflow)

    async def resume(self, aimed: Aimed[ToolEntry], approval: Approval) -> Cleared | Collected:
        """Let an approved call run whose own request is gone (it became a task): once, as `clear` does."""
        assert self._store is not None
        if approval.state is ApprovalState.APPROVED:
            try:
                return await self._begin(aimed, approval)
            except ApprovalConflict:
                approval = await self._store.get(approval.id)  # another request started it first
        return await self._settled(approval.tool, approval)

    async def task(self, approval: Approval) -> HeldTask:
        """The held call as its task shows it: its outcome, or why it will not run, once there is one."""
        outcome: JsonObject | ApprovalRefused | None = None
        if approval.state not in OPEN_STATES:
            try:
                outcome = (await self._settled(approval.tool, approval)).result
            except ApprovalRefused as refused:
                outcome = refused
        return HeldTask(approval, outcome, self._settings.task_poll_interval)

    async def withdraw(self, agent: str, approval_id: str) -> Approval:
        """The agent takes back its own held call while people have not decided; later, nothing changes."""
        approval = await self.owned(agent, approval_id)
        assert self._store is not None
        if approval.state is not ApprovalState.PENDING:
            return approval
        try:
            return await self._store.cancel(approval.id, actor=agent, comment="withdrawn by the agent (tasks/cancel)")
        except ApprovalConflict:
            return await self._store.get(approval.id)  # decided meanwhile: the decision stands

    # -- steps ----------------------------------------------------------------------------------

    async def _repeat_of(self, call: Call, entry: ToolEntry) -> Approval | None:
        assert self._store is not None
        return await self._store.find_repeat(
            call.principal.agent, entry.exposed, _digest(call), refused_since=datetime.now(UTC)
        )

    async def _wait(self, approval: Approval, wait: float, on_progress: ProgressCallback | None) -> Approval:
        """Wait until the approval leaves `pending`/`executing` or `wait` seconds pass.

        A change committed by any process rings this request's waiter, and it looks at once. It
        also looks every `poll_interval` seconds, so a lost signal (or a decision a SQLite
        gateway's command line made) is found anyway, and at the approval's expiry, to expire it.
        """
        assert self._store is not None
        now = anyio.current_time()
        deadline = now + wait
        next_progress = now
        next_look = now  # the first look comes after the waiter is set: a change before it rang nobody
        step = 0
        with self._wakeups.waiting(approval.id) as waiter:
            while approval.state in (ApprovalState.PENDING, ApprovalState.EXECUTING):
                now = anyio.current_time()
                if now >= deadline:
                    break
                if on_progress is not None and now >= next_progress:
                    await on_progress(float(step), None, _waiting_message(approval))
                    step += 1
                    next_progress = now + self._settings.progress_interval
                wake_at = min(deadline, next_look, next_progress if on_progress is not None else deadline)
                left = (approval.expires_at - datetime.now(UTC)).total_seconds()
                expiring = approval.state is ApprovalState.PENDING and left > 0
                if expiring:
                    wake_at = min(wake_at, now + left)
                rung = await waiter.wait(wake_at - now)
                now = anyio.current_time()
                if rung or now >= next_look or (expiring and approval.expires_at <= datetime.now(UTC)):
                    approval = await self._store.expire_if_due(await self._store.get(approval.id))
                    next_look = now + self._settings.poll_interval
        return approval

    async def _begin(self, aimed: Aimed[ToolEntry], approval: Approval) -> Cleared:
        """Take the approved call for this request, and ask the access policies again with the approval known."""
        assert self._store is not None
        approval, arguments = await self._store.begin_execution(approval.id, executor=self._executor)
        votes = await self._store.votes(approval.id)
        context = ApprovalContext(
            granted=True,
            approvers=tuple(vote.user for vote in votes if vote.approve),
            decided_at=approval.decided_at or datetime.now(UTC),
        )
        call = aimed.call
        assert call.target is not None
        approved = Aimed(call.resolved(call.target, arguments=arguments), aimed.entry)
        decision = self._decisions.decide_call(approved.call, approved.entry, approval=context)
        if not decision.allowed:
            refusal = f"denied after approval: {decision.reason}"
            await self._store.finish(approval.id, succeeded=False, result=orjson.dumps(error_result(refusal)))
            raise PolicyDenied(refusal, policy_ids=decision.policy_ids)
        # The audit entry of the run says who let it run, beside the access policy that allows it.
        reason = f"approved by {', '.join(context.approvers)} (approval {approval.id}); {decision.reason}"
        return Cleared(approval.id, approved, replace(decision, reason=reason))

    async def _settled(self, tool: str, approval: Approval) -> Collected:
        """What an approval that is not (or no longer) the caller's to run means to the agent (of `tool`)."""
        if approval.kind is ApprovalKind.QUESTION:
            return _question_settled(approval)
        state = approval.state
        if state is ApprovalState.SUCCEEDED or (state is ApprovalState.FAILED and approval.result is not None):
            return Collected(approval.id, _stored_result(approval, self._settings.max_result_bytes))
        if state in (ApprovalState.PENDING, ApprovalState.EXECUTING, ApprovalState.APPROVED):
            raise ApprovalPending(_pending_message(tool, approval), approval_id=approval.id)
        if state is ApprovalState.UNKNOWN:
            raise ApprovalRefused(
                f"'{tool}' was approved (approval {approval.id}) but the gateway stopped while it ran, so "
                "whether it took effect is unknown; it is not run again. Check the backend before acting on it."
            )
        assert self._store is not None
        denials = [vote for vote in await self._store.votes(approval.id) if not vote.approve]
        raise ApprovalRefused(ended_message(tool, approval, denials[0] if denials else None))


def _question_settled(approval: Approval) -> Collected:
    """A question's answer, as the asking call's result; or why there is none (pending, expired, withdrawn)."""
    if approval.state is ApprovalState.ANSWERED and approval.answer is not None:
        return Collected(approval.id, answer_result(approval.id, approval.answer))
    if approval.state is ApprovalState.PENDING:
        raise ApprovalPending(
            pending_message(approval.id, approval.approvers, approval.expires_at), approval_id=approval.id
        )
    ended_by = approval.ended_by if approval.state is not ApprovalState.EXPIRED else None
    raise ApprovalRefused(
        unanswered_message(approval.id, expired_at=approval.expires_at, ended_by=ended_by, why=approval.end_comment)
    )


def _digest(call: Call) -> str:
    return arguments_digest(call.name or "", call.arguments)


def _no_wait(call: Call) -> bool:
    return bool(call.meta and call.meta.get(NO_WAIT_META_KEY) is True) or declares_tasks(call)


def declares_tasks(call: Call) -> bool:
    """Whether the request declared the tasks extension: its held call is answered at once, with a task.

    Only the stateless revision carries capabilities per request; the extension does not exist
    before it, so an older client's `_meta` is never read as declaring it.
    """
    if call.origin.protocol_version not in MODERN_PROTOCOL_VERSIONS or not call.meta:
        return False
    capabilities = call.meta.get(CLIENT_CAPABILITIES_META_KEY)
    extensions = capabilities.get("extensions") if isinstance(capabilities, Mapping) else None
    return isinstance(extensions, Mapping) and isinstance(extensions.get(TASKS_EXTENSION), Mapping)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="minutes").replace("+00:00", "Z")


def _waiting_message(approval: Approval) -> str:
    if approval.state is ApprovalState.EXECUTING:
        return "approved; running"
    if approval.kind is ApprovalKind.QUESTION:
        return f"waiting for an answer from {', '.join(approval.approvers)}, expires {_when(approval.expires_at)}"
    return (
        f"waiting for approval by {', '.join(approval.approvers)} "
        f"({approval.quorum} needed), expires {_when(approval.expires_at)}"
    )


def task_message(approval: Approval) -> str:
    """A held call's task status while it is under way: what it waits for, or that it runs."""
    if approval.kind is ApprovalKind.QUESTION:
        return f"question {approval.id} is {_waiting_message(approval)}"
    if approval.state is not ApprovalState.PENDING:
        return f"'{approval.tool}' was approved (approval {approval.id}) and is running"
    reason = f" Reason: {approval.reasons[0]}" if approval.reasons else ""
    return f"'{approval.tool}' is held for approval {approval.id}: {_waiting_message(approval)}.{reason}"


def _pending_message(tool: str, approval: Approval) -> str:
    reason = f" Reason: {approval.reasons[0]}" if approval.reasons else ""
    return (
        f"'{tool}' is held for approval and has not run. Approval {approval.id} needs "
        f"{approval.quorum} approval(s) from {', '.join(approval.approvers)} and expires "
        f"{_when(approval.expires_at)}.{reason} Repeat the identical call (same tool and arguments) to get "
        "its outcome: it runs once, when approved, and never twice."
    )


def ended_message(tool: str, approval: Approval, denial: Vote | None) -> str:
    """Why a held call will not run: who denied or cancelled it, and their comment; or that it expired."""
    if denial is not None:
        said = f": {denial.comment}" if denial.comment else ""
        how = f"denied by {denial.user} at {_when(denial.time)}{said}"
    elif approval.state in (ApprovalState.CANCELLED, ApprovalState.DENIED) and approval.ended_by is not None:
        # Ended by a person without a vote: a cancellation, or the admin's denial.
        said = f": {approval.end_comment}" if approval.end_comment else ""
        moment = approval.finished_at if approval.state is ApprovalState.CANCELLED else approval.decided_at
        at = f" at {_when(moment)}" if moment is not None else ""
        how = f"{approval.state.value} by {approval.ended_by}{at}{said}"
    elif approval.state is ApprovalState.EXPIRED and approval.decided_at is not None:
        # Approved, but the agent did not repeat the call in time to run it: the arguments were dropped.
        ended = _when(approval.finished_at or approval.decided_at)
        how = f"approved at {_when(approval.decided_at)} but not collected in time, so it expired unrun at {ended}"
    elif approval.state is ApprovalState.EXPIRED:
        how = f"expired at {_when(approval.expires_at)} without a decision"
    else:
        how = approval.state.value
    return f"'{tool}' was not run: its approval {approval.id} was {how}."


def _stored_result(approval: Approval, bound: int) -> JsonObject:
    too_large = (
        f"'{approval.tool}' ran once approved (approval {approval.id}), but its result was larger than "
        f"{bound} bytes and was not kept; it is not run again."
    )
    return kept_result(approval.result, approval.result_truncated, too_large=too_large)
