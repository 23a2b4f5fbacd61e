"""One agent request, one pass through DESIGN.md's stages, read top to bottom in `Pipeline._run`.

    resolve → context → decide → (hold) → record → forward → finish

The front builds a `Call` and hands it here; what differs between a tool call, a resource read
and a prompt get is in `request_kinds.py`. The audit entry is written before anything is
forwarded, and a request the audit log cannot record is refused; the outcome follows without
making the agent wait for a second commit. A request refused before any decision (unknown name,
unusable arguments, no policies loaded) is recorded too. The pipeline knows nothing of HTTP or
stdio (the front turns results and errors into wire messages) and nothing of how a backend is
reached (connectors).
"""

from __future__ import annotations

import asyncio  # a callback after the answer: see `_forward`
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

import anyio
import anyio.to_thread

from gateway.approvals import Approval, ApprovalState
from gateway.audit import AuditRecorder, CallHandle, Redactor, Timings
from gateway.calls import Call, Origin, Target
from gateway.catalog import Catalog, ResourceRoute, ToolEntry
from gateway.connectors.base import Connector, JsonObject, ProgressCallback
from gateway.coordination.idempotency import Duplicates, IdempotencyRule, Replay
from gateway.coordination.locks import RecordLocks
from gateway.coordination.rates import RateCounter
from gateway.coordination.sharing import result_summary
from gateway.coordination.suspended_agents import SuspendedAgents
from gateway.coordination.workflows import WorkflowStore
from gateway.errors import GatewayError, GatewayNotReady, InvalidArguments, InvalidWorkflowId, RequestRejected
from gateway.holding import Cleared, Collected, HeldTask, HoldStage
from gateway.policy import Decision, PolicyEngine
from gateway.request_kinds import Aimed, PromptGets, RequestKind, ResourceReads, ToolCalls
from gateway.settings.approvals import ApprovalSettings
from gateway.telemetry import RequestTrace, Telemetry

logger = logging.getLogger("gateway.calls")

#: Up to this many tools, deciding which an agent may see costs less than handing it to a thread.
_INLINE_VISIBILITY_TOOLS = 256

#: What an agent is told while no valid access policy set is loaded (nothing can be decided).
NOT_READY_MESSAGE = (
    "the gateway is not ready: no valid access policies are loaded, so no request can be decided; "
    "retry later. Operators: the policy error is in the gateway log, in /readyz and from `gateway policy validate`"
)


_NOT_LOCKED: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()


@dataclass(frozen=True, slots=True)
class ToolPage:
    """The tools an agent may see among one window of the catalog, and where the next window starts."""

    tools: list[Mapping[str, Any]]
    next_start: int | None


@dataclass(slots=True)
class _Clock:
    """Latency split for the audit log: policy, backend, total (milliseconds)."""

    started: float = field(default_factory=time.perf_counter)
    policy_ms: float | None = None
    backend_ms: float | None = None

    def lap(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    @property
    def total_ms(self) -> float:
        return self.lap()


def outcome_of(error: BaseException) -> str:
    """The audit outcome of a request that ended with `error`: the error tree's, or "cancelled"."""
    if isinstance(error, anyio.get_cancelled_exc_class()):
        return "cancelled"
    return error.outcome if isinstance(error, GatewayError) else "backend_error"


class Pipeline:
    def __init__(
        self,
        catalog: Catalog,
        connectors: Mapping[str, Connector],
        policy: PolicyEngine,
        audit: AuditRecorder,
        telemetry: Telemetry,
        *,
        holds: HoldStage | None = None,
        locks: RecordLocks | None = None,
        suspended: SuspendedAgents | None = None,
        rates: RateCounter | None = None,
        duplicates: Duplicates | None = None,
        tools_page_size: int = 1000,
        workflows: WorkflowStore | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self._tools_page_size = tools_page_size
        #: Where a workflow's state is read for the policies that need it; None: every workflow looks empty.
        self._workflows = workflows
        self._redactor = redactor or Redactor()
        #: Agents an operator suspended: every request of theirs is refused (an empty set without one).
        self._suspended = suspended or SuspendedAgents()
        self._catalog = catalog
        self._connectors = connectors
        self._policies = policy.store
        self._decisions = policy.decisions
        self._audit = audit
        self._telemetry = telemetry
        #: Without a hold stage (no approvals configured), a held call is refused: nothing runs unapproved.
        self._holds = holds or HoldStage(None, self._decisions, Redactor(), ApprovalSettings(), executor="")
        #: Without record locks (none configured), no call waits for another.
        self._locks = locks
        #: Tools with an idempotency key run once per key (see `coordination/idempotency.py`); none without.
        self._duplicates = duplicates or Duplicates(None)
        #: Every tool call is counted, for `context.rate` (shared with other processes by the runtime).
        self._tool_calls = ToolCalls(catalog, self._decisions, rates or RateCounter())
        self._resource_reads = ResourceReads(catalog, self._decisions)
        self._prompt_gets = PromptGets(catalog, self._decisions)

    # -- requests that reach a backend ---------------------------------------------------------

    async def call_tool(
        self, call: Call, *, on_progress: ProgressCallback | None = None, tool: ToolEntry | None = None
    ) -> JsonObject:
        """Every `tools/call` enters here, whatever the protocol revision or transport.

        `tool` is the catalog entry of `call.name` when the front already looked it up (see `find_tool`).
        """
        return await self._run(call, self._tool_calls, on_progress, tool)

    async def read_resource(self, call: Call) -> JsonObject:
        """`call.name` is the exposed URI; the backend is asked for its own, and answers with exposed ones."""
        return await self._run(call, self._resource_reads, None, None)

    async def get_prompt(self, call: Call) -> JsonObject:
        return await self._run(call, self._prompt_gets, None, None)

    async def held_task(self, origin: Origin, task_id: str, *, run: bool = True) -> HeldTask:
        """A held call that became a task (`tasks/get`): where it stands, and its outcome once it has one.

        Asked after people approved it, this runs it (unless `run` is false), as the repeat of a
        held call would: once, through every stage, with the access policies asked again. Only
        the agent that made the call can see it; it does not matter which gateway process it asks.
        """
        self._require_not_suspended(origin)
        approval = await self._holds.owned(origin.principal.agent, task_id)
        if run and approval.state is ApprovalState.APPROVED:
            call = self._holds.approved_call(origin, approval)
            # Shielded: a poll that goes away must not cut the approved call off half done.
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(GatewayError):  # the outcome, refusals included, is on the approval
                    await self._run(call, self._tool_calls, None, None, approval)
            approval = await self._holds.owned(origin.principal.agent, task_id)
        return await self._holds.task(approval)

    async def withdraw_task(self, origin: Origin, task_id: str) -> None:
        """`tasks/cancel`: the agent takes back its held call while it is still pending."""
        self._require_not_suspended(origin)
        await self._holds.withdraw(origin.principal.agent, task_id)

    def find_tool(self, exposed_name: str) -> ToolEntry | None:
        """The catalog entry of a tool, for a front that needs its schema before the call runs.

        The SDK checks a 2026-07-28 call's `Mcp-Param` headers against the tool's input schema;
        the entry found for that goes on to `call_tool`, so the name is looked up once.
        """
        try:
            return self._catalog.resolve_tool(exposed_name)
        except GatewayError:
            return None

    def tool_input_schema(self, exposed_name: str) -> Mapping[str, Any] | None:
        """The SDK server's own `Mcp-Param` check (stdio and delegated requests), without a listing per call."""
        entry = self.find_tool(exposed_name)
        return entry.definition.get("inputSchema") if entry is not None else None

    async def _run(
        self,
        call: Call,
        kind: RequestKind[Any],
        on_progress: ProgressCallback | None,
        found: Any,
        approval: Approval | None = None,
    ) -> JsonObject:
        """Every stage of one request; `approval` is the approved hold a task's call runs under."""
        clock = _Clock()
        with self._telemetry.request_span(call) as trace:
            await self._refuse_suspended(call, clock)
            await self._require_policies(call, clock)
            if call.workflow_problem is not None:
                await self._refuse(call, InvalidWorkflowId(call.workflow_problem), clock)
            aimed = await self._resolve(kind, call, found, clock, trace)  # 1 resolve, 2 context
            aimed = await self._workflow_state(aimed, clock)
            decision = await self._decide(kind, aimed, clock)  # 3 decide
            cleared = await self._hold(kind, aimed, decision, clock, on_progress, approval)  # 4 hold, until approved
            if isinstance(cleared, Collected):
                return cleared.result  # it ran once approved; a repeat gets that outcome, never a second run
            if cleared is not None:
                aimed, decision = cleared.aimed, cleared.decision
            rule = self._duplicates.rule_for(aimed.call, aimed.entry) if decision.allowed else None
            if rule is not None:  # a tool with an idempotency key: a repeat gets the first call's result
                return await self._once(rule, kind, aimed, decision, clock, trace, on_progress, cleared)
            handle = await self._record(  # 5 record, before anything is forwarded
                aimed.call, decision.effect.value, reason=decision.reason, policy_ids=decision.policy_ids
            )
            return await self._forward(kind, aimed, decision, handle, clock, trace, on_progress, cleared)  # 6, 7

    # -- the stages ----------------------------------------------------------------------------

    async def _require_policies(self, call: Call, clock: _Clock) -> None:
        """Without a valid policy set nothing can be decided: say so plainly (recorded), rather than
        answering with an empty listing or "unknown tool", which would send the agent looking elsewhere."""
        if not self._policies.loaded:
            await self._refuse(call, GatewayNotReady(NOT_READY_MESSAGE), clock)

    async def _refuse_suspended(self, call: Call, clock: _Clock) -> None:
        """An agent an operator suspended is refused before anything else is done for it (recorded)."""
        suspension = self._suspended.of(call.origin.principal.agent)
        if suspension is not None:
            await self._refuse(call, suspension.refusal(), clock)

    def _require_not_suspended(self, origin: Origin) -> None:
        suspension = self._suspended.of(origin.principal.agent)
        if suspension is not None:
            raise suspension.refusal()

    async def _resolve(
        self, kind: RequestKind[Any], call: Call, found: Any, clock: _Clock, trace: RequestTrace
    ) -> Aimed[Any]:
        """1 resolve the name to a backend target, 2 prepare what the backend may see (refusals recorded)."""
        try:
            aimed = kind.find(call, found)
        except RequestRejected as exc:
            await self._refuse(call, exc, clock)
        trace.resolved(aimed.call.target.connector if aimed.call.target else "")
        try:
            aimed = kind.prepare(aimed)
        except InvalidArguments as exc:
            await self._refuse(aimed.call, kind.concealed(aimed, exc), clock)
        aimed = kind.counted(aimed)
        if call.method == "tools/call":
            trace.record_arguments(aimed.call.arguments)
        return aimed

    async def _workflow_state(self, aimed: Aimed[Any], clock: _Clock) -> Aimed[Any]:
        """2 context, continued: what the workflow did so far, read only when a policy for this tool reads it.

        Every other call pays a dict lookup. A database that cannot answer refuses the call
        (recorded): deciding on an empty history would let an ordering policy's `unless` pass.
        """
        call = aimed.call
        if (
            call.workflow is None
            or self._workflows is None
            or call.method != "tools/call"
            or not self._decisions.reads_workflow_state(call.name or "")
        ):
            return aimed
        try:
            state = await self._workflows.state(call.workflow)
        except GatewayError as exc:
            await self._refuse(call, exc, clock)
        return Aimed(call.with_workflow_state(state), aimed.entry)

    async def _decide(self, kind: RequestKind[Any], aimed: Aimed[Any], clock: _Clock) -> Decision:
        """3 decide: one policy span and one latency lap, whatever is being decided."""
        principal = aimed.call.principal
        if not self._decisions.ready_for(principal):
            # An agent new to the loaded policies gets its entities built in a worker thread, not on the loop.
            await anyio.to_thread.run_sync(self._decisions.prepare, principal)
        with self._telemetry.policy_span(aimed.call.method, aimed.call.name) as policy_trace:
            decision = kind.decide(aimed)
            policy_trace.decided(decision.effect.value, policy_ids=decision.policy_ids)
        clock.policy_ms = clock.lap()
        unusable = kind.unusable(aimed, decision)
        if unusable is not None:
            await self._refuse(aimed.call, unusable, clock)
        return decision

    async def _hold(
        self,
        kind: RequestKind[Any],
        aimed: Aimed[Any],
        decision: Decision,
        clock: _Clock,
        on_progress: ProgressCallback | None,
        approval: Approval | None,
    ) -> Cleared | Collected | None:
        """4 hold: None when no approval policy holds the call; else it waits for people (see `holding.py`).

        A hold that ends without running (pending past the wait, denied, expired) is recorded like
        any refusal, with the approval policies that held it; a collected outcome is recorded too.
        A call made under an `approval` already granted runs under it whatever the policies hold
        now; the access policies are asked again as it starts.
        """
        if approval is not None:
            policy_ids = approval.policy_ids
        else:
            if not decision.allowed:
                return None
            hold = self._holds.routed(aimed, kind.hold(aimed, decision))
            if not hold.held:
                return None
            policy_ids = hold.policy_ids
        with self._telemetry.hold_span(aimed.call.method, aimed.call.name) as trace:
            try:
                if approval is not None:
                    cleared = await self._holds.resume(aimed, approval)
                else:
                    cleared = await self._holds.clear(aimed, hold, on_progress)
            except GatewayError as exc:
                trace.set_attribute("gateway.approval.outcome", exc.outcome)
                await self._refuse(aimed.call, exc, clock, verdict="hold", policy_ids=policy_ids)
            trace.set_attribute("gateway.approval.id", cleared.approval_id)
        if isinstance(cleared, Collected):
            reason = f"the outcome of approval {cleared.approval_id}, which already ran"
            handle = await self._record(aimed.call, "hold", reason=reason, policy_ids=policy_ids)
            outcome = "tool_error" if cleared.result.get("isError") else "ok"
            await self._finish(handle, outcome, clock, result=cleared.result)
            self._log(aimed.call, decision, outcome, clock)
        return cleared

    async def _once(
        self,
        rule: IdempotencyRule,
        kind: RequestKind[Any],
        aimed: Aimed[Any],
        decision: Decision,
        clock: _Clock,
        trace: RequestTrace,
        on_progress: ProgressCallback | None,
        cleared: Cleared | None,
    ) -> JsonObject:
        """5-7 for a call with an idempotency key: taken once per key, or answered from the record (a replay).

        Once sent, it runs to its end even when its agent goes away, so its outcome is recorded
        for the repeat rather than left unknown.
        """
        call = aimed.call
        try:
            claimed = await self._duplicates.claim(call, aimed.entry, rule, on_progress)
        except GatewayError as exc:
            await self._refuse(call, exc, clock, verdict=decision.effect.value, policy_ids=decision.policy_ids)
        if isinstance(claimed, Replay):
            handle = await self._record(
                call, decision.effect.value, reason=claimed.reason, policy_ids=decision.policy_ids
            )
            await self._finish(handle, "replayed", clock, result=claimed.result)
            self._log(call, decision, "replayed", clock)
            return claimed.result
        try:
            handle = await self._record(
                call, decision.effect.value, reason=decision.reason, policy_ids=decision.policy_ids
            )
        except BaseException:
            await self._duplicates.abandoned(claimed)
            raise
        try:
            with anyio.CancelScope(shield=True):
                result = await self._forward(kind, aimed, decision, handle, clock, trace, on_progress, cleared)
        except BaseException as exc:
            await self._duplicates.finished(claimed, call_id=handle.call_id, result=None, error=exc)
            raise
        await self._duplicates.finished(claimed, call_id=handle.call_id, result=result, error=None)
        return result

    async def _record(self, call: Call, decision: str, *, reason: str, policy_ids: tuple[str, ...] = ()) -> CallHandle:
        """5 record: the write-ahead entry, durable before the request goes further, or the request is refused."""
        with self._telemetry.audit_span(call.method, call.name):
            return await self._audit.record_call(call, decision=decision, policy_ids=policy_ids, reason=reason)

    async def _forward(
        self,
        kind: RequestKind[Any],
        aimed: Aimed[Any],
        decision: Decision,
        handle: CallHandle,
        clock: _Clock,
        trace: RequestTrace,
        on_progress: ProgressCallback | None,
        cleared: Cleared | None = None,
    ) -> JsonObject:
        """6 forward to the backend (or refuse what was denied), 7 finish: the outcome on record
        (and on the approval of a held call, so a repeat of it collects the outcome)."""
        call = aimed.call
        target = call.target
        assert target is not None, "resolved before forwarding"
        try:
            if not decision.allowed:
                raise kind.refusal(aimed, decision)
            async with self._locked(call, on_progress):  # one call at a time per record, when the tool names a lock
                backend_started = time.perf_counter()
                try:
                    with self._telemetry.backend_span(target.connector, target.original, method=call.method) as backend:
                        result = await kind.send(aimed, self._connectors[target.connector], on_progress)
                        backend.record_result(result)
                finally:
                    clock.backend_ms = (time.perf_counter() - backend_started) * 1000
        except BaseException as exc:
            outcome = "denied" if not decision.allowed else outcome_of(exc)
            with anyio.CancelScope(shield=True):
                await self._finish(handle, outcome, clock, error=exc)
                if cleared is not None:
                    await self._holds.finished(cleared, result=None, error=exc)
            self._log(call, decision, outcome, clock)
            raise
        if cleared is not None:
            await self._holds.finished(cleared, result=result, error=None)
        outcome = "tool_error" if result.get("isError") else "ok"
        trace.record_result(result)
        if outcome == "ok" and call.workflow is not None and call.method == "tools/call":
            await self._share(aimed, handle, result)
            if self._decisions.tracks_completion(call.name or ""):
                # A step an ordering policy waits for counts on every replica before its agent hears of it.
                await self._finish(handle, outcome, clock, result=result, wait=True)
                self._log(call, decision, outcome, clock)
                return result
        # Nothing waits for the outcome's commit: it is queued, and the line logged, once the
        # agent's answer is on its way (the callback runs when the request's task next yields).
        asyncio.get_running_loop().call_soon(self._finish_answered, handle, outcome, clock, result, call, decision)
        return result

    def _finish_answered(
        self, handle: CallHandle, outcome: str, clock: _Clock, result: JsonObject, call: Call, decision: Decision
    ) -> None:
        """7 finish, for a call already answered: its outcome queued for the next commit, and its log line."""
        try:
            self._audit.queue_outcome(handle, outcome=outcome, result=result, timings=self._timings(clock))
        except (GatewayError, ValueError) as exc:  # shutting down: the chain records the call as open
            logger.warning("outcome not recorded", extra={"call_id": handle.call_id, "error": str(exc)})
        self._log(call, decision, outcome, clock)

    async def _share(self, aimed: Aimed[Any], handle: CallHandle, result: JsonObject) -> None:
        """7 finish, for a tool whose connector file shares its results: the summary other agents read.

        Written before the agent hears the result, so what it tells the others is there when it
        does; a summary the database does not take is logged and left out, never failing the call.
        """
        entry = aimed.entry
        call = aimed.call
        if not isinstance(entry, ToolEntry) or not entry.share_result or self._workflows is None:
            return
        summary = result_summary(result, self._redactor, tool=call.name)
        if summary is None or call.workflow is None:
            return
        try:
            await self._workflows.share_result(
                call.workflow, call_id=handle.call_id, tool=entry.exposed, agent=call.principal.agent, summary=summary
            )
        except GatewayError:
            logger.warning("a shared result summary could not be stored", extra={"tool": entry.exposed})

    def _locked(self, call: Call, on_progress: ProgressCallback | None) -> contextlib.AbstractAsyncContextManager[None]:
        """6 (before forwarding) the call's record lock, held until the backend call ends (see `coordination.locks`)."""
        return self._locks.held(call, on_progress) if self._locks is not None else _NOT_LOCKED

    async def _refuse(
        self,
        call: Call,
        error: GatewayError,
        clock: _Clock,
        *,
        verdict: str | None = None,
        policy_ids: tuple[str, ...] = (),
    ) -> NoReturn:
        """A request refused before it could run is still on record; raises `error`.

        `verdict` is the decision recorded (the outcome when refused before any decision).
        """
        outcome = error.outcome
        handle = await self._record(call, verdict or outcome, reason=str(error), policy_ids=policy_ids)
        await self._finish(handle, outcome, clock, error=error)
        self._log(call, None, outcome, clock)
        raise error

    async def _finish(
        self,
        handle: CallHandle,
        outcome: str,
        clock: _Clock,
        *,
        result: Any = None,
        error: BaseException | None = None,
        wait: bool = False,
    ) -> None:
        """The outcome on record; `wait` for its commit only when another replica must see it at once."""
        await self._audit.record_outcome(
            handle, outcome=outcome, result=result, error=error, timings=self._timings(clock), wait=wait
        )

    @staticmethod
    def _timings(clock: _Clock) -> Timings:
        return Timings(clock.policy_ms, clock.backend_ms, clock.total_ms)

    def _log(self, call: Call, decision: Decision | None, outcome: str, clock: _Clock) -> None:
        target = call.target
        logger.info(
            "call finished",
            extra={
                "method": call.method,
                "target": target.original if target is not None and decision is not None else call.name,
                "connector": target.connector if target is not None else None,
                "agent": call.principal.agent,
                "user": call.principal.user,
                "request_id": call.origin.request_id,
                "session_id": call.origin.session_id,
                "decision": decision.effect.value if decision else None,
                "policies": list(decision.policy_ids) if decision else None,
                "outcome": outcome,
                "latency_ms": round(clock.total_ms, 3),
            },
        )

    # -- listings: an agent sees only what it may use ------------------------------------------

    async def list_tools(self, origin: Origin, *, start: int = 0) -> ToolPage:
        """The visible tools among `tools_page_size` catalog positions from `start` (a page may hold none).

        Pages are windows of the catalog, not of what the agent sees, so a page costs the same
        whatever the policies hide and needs no state between requests.
        """
        next_start: int | None = None

        async def listing() -> list[Mapping[str, Any]]:
            nonlocal next_start
            catalog = list(self._catalog.tools())
            end = start + self._tools_page_size
            tools = catalog[start:end]
            next_start = end if end < len(catalog) else None

            def visible_tools() -> list[Mapping[str, Any]]:
                return [self._holds.listed(origin, entry) for entry in self._decisions.visible_tools(origin, tools)]

            # A few tools are judged inline; thousands in a worker thread, so other requests keep flowing.
            if len(tools) <= _INLINE_VISIBILITY_TOOLS:
                return visible_tools()
            return await anyio.to_thread.run_sync(visible_tools)

        tools = await self._listing(Call("tools/list", origin), listing)
        return ToolPage(tools, next_start)

    async def list_prompts(self, origin: Origin) -> list[Mapping[str, Any]]:
        async def listing() -> list[Mapping[str, Any]]:
            return [p.definition for p in self._decisions.visible_prompts(origin, self._catalog.prompts())]

        return await self._listing(Call("prompts/list", origin), listing)

    async def list_resources(self, origin: Origin) -> list[Mapping[str, Any]]:
        async def listing() -> list[Mapping[str, Any]]:
            return self._decisions.visible_resources(origin, self._catalog.resources())

        return await self._listing(Call("resources/list", origin), listing)

    async def list_resource_templates(self, origin: Origin) -> list[Mapping[str, Any]]:
        async def listing() -> list[Mapping[str, Any]]:
            return self._decisions.visible_resource_templates(origin, self._catalog.resource_templates())

        return await self._listing(Call("resources/templates/list", origin), listing)

    async def _listing(
        self, call: Call, produce: Callable[[], Awaitable[list[Mapping[str, Any]]]]
    ) -> list[Mapping[str, Any]]:
        clock = _Clock()
        with self._telemetry.request_span(call):
            await self._refuse_suspended(call, clock)
            await self._require_policies(call, clock)
            handle = await self._record(call, "allow", reason="filtered by policy")
            items = await produce()
            await self._finish(handle, "ok", clock, result={"count": len(items)})
            self._log(call, None, "ok", clock)
            return items

    # -- resource updates: what a listen stream may hear of, asked of the backends -------------

    def readable_resources(self, origin: Origin, uris: Iterable[str]) -> list[ResourceRoute]:
        """The routes of the exposed URIs among `uris` that `origin`'s agent may read."""
        self._require_not_suspended(origin)
        readable = []
        for uri in dict.fromkeys(uris):
            try:
                route = self._catalog.resolve_resource(uri)
            except GatewayError:
                continue
            call = Call("resources/read", origin, uri, target=Target(route.connector, route.uri))
            if self._decisions.decide_read_resource(call).allowed:
                readable.append(route)
        return readable

    @contextmanager
    def watching_resources(self, routes: Iterable[ResourceRoute]) -> Iterator[None]:
        """Have each backend send updates to its resources among `routes` while the block runs."""
        by_connector: dict[str, list[str]] = {}
        for route in routes:
            by_connector.setdefault(route.connector, []).append(route.uri)
        with ExitStack() as stack:
            for connector, uris in by_connector.items():
                stack.enter_context(self._connectors[connector].watching(uris))
            yield
