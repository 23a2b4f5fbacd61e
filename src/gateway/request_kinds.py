"""What differs between a tool call, a resource read and a prompt get; the pipeline runs the rest.

Each kind finds the backend target of the name an agent sent, prepares what the backend may see,
asks the policies, says how a denial looks to the agent, and sends the request through the
target's connector. Everything around these steps (recording, timing, tracing, logging, mapping
failures to outcomes) is the same for all three and lives in `pipeline.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from gateway.calls import REASONING_META_KEY, Call, Target
from gateway.catalog import Catalog, PromptEntry, ToolEntry
from gateway.connectors.base import Caller, Connector, JsonObject, ProgressCallback
from gateway.coordination.rates import RateCounter
from gateway.errors import (
    GatewayError,
    InvalidArguments,
    PolicyDenied,
    ReasoningRequired,
    ToolUnderReview,
    UnknownPrompt,
    UnknownTool,
    UnusableArguments,
)
from gateway.policy import Decision, HoldDecision, PolicyDecisions
from gateway.policy.hold import NOT_HELD
from gateway.resource_uris import expose_prompt_result, expose_read_result, expose_tool_result
from gateway.telemetry import inject_meta

#: `_meta` keys the gateway never forwards: the client's envelope and progress token belong to
#: the agent's connection (the backend connection stamps its own), and the gateway's own keys
#: (reasoning, workflow) are for the gateway.
_RESERVED_META_PREFIXES = ("io.modelcontextprotocol/", "io.autonomy-gateway/")
_RESERVED_META_KEYS = frozenset({"progressToken", "progress_token"})

EntryT = TypeVar("EntryT", ToolEntry, PromptEntry, None)


@dataclass(frozen=True, slots=True)
class Aimed(Generic[EntryT]):
    """A call with its target, and the catalog entry its kind needs to decide and send it."""

    call: Call
    entry: EntryT


class RequestKind(Protocol[EntryT]):
    """One kind of request the pipeline runs; every method but `send` is quick and synchronous."""

    def find(self, call: Call, found: EntryT | None) -> Aimed[EntryT]:
        """The call aimed at its backend target; raises `UnknownTarget` for a name that is not served.

        `found` is the catalog entry of `call.name` when the front already looked it up.
        """

    def prepare(self, aimed: Aimed[EntryT]) -> Aimed[EntryT]:
        """What the backend may see, and the agent's reasoning; raises `InvalidArguments`."""

    def counted(self, aimed: Aimed[EntryT]) -> Aimed[EntryT]:
        """The call with the agent's recent calls counted, this one included (tool calls only: `context.rate`)."""

    def concealed(self, aimed: Aimed[EntryT], error: InvalidArguments) -> GatewayError:
        """`error`, or "unknown" when the agent may not even see the target (probing reveals nothing)."""

    def decide(self, aimed: Aimed[EntryT]) -> Decision: ...

    def unusable(self, aimed: Aimed[EntryT], decision: Decision) -> UnusableArguments | None:
        """Arguments the policies could not take because they break the tool's schema: the agent can fix them."""

    def hold(self, aimed: Aimed[EntryT], decision: Decision) -> HoldDecision:
        """Whether a request `decision` allowed must wait for people's approval first (only tool calls can be held)."""

    def refusal(self, aimed: Aimed[EntryT], decision: Decision) -> GatewayError:
        """What the agent is told of a denial."""

    async def send(
        self, aimed: Aimed[EntryT], connector: Connector, on_progress: ProgressCallback | None
    ) -> JsonObject: ...


def forwardable_meta(meta: Mapping[str, Any] | None) -> JsonObject | None:
    """The part of a request's `_meta` a backend may see (trace context, custom keys)."""
    if not meta:
        return None
    kept = {k: v for k, v in meta.items() if k not in _RESERVED_META_KEYS and not k.startswith(_RESERVED_META_PREFIXES)}
    return kept or None


def _unknown_tool(exposed: str) -> UnknownTool:
    return UnknownTool(f"unknown tool '{exposed}': list the tools to see the available names")


def _unknown_prompt(exposed: str) -> UnknownPrompt:
    return UnknownPrompt(f"unknown prompt '{exposed}': list the prompts to see the available names")


def _denied(decision: Decision) -> PolicyDenied:
    return PolicyDenied(f"denied: {decision.reason}", policy_ids=decision.policy_ids)


class ToolCalls:
    """`tools/call`: arguments checked and stripped of the reasoning parameter, decided with them."""

    def __init__(self, catalog: Catalog, policy: PolicyDecisions, rates: RateCounter) -> None:
        self._catalog = catalog
        self._policy = policy
        self._rates = rates

    def find(self, call: Call, found: ToolEntry | None) -> Aimed[ToolEntry]:
        try:
            entry = found if found is not None else self._catalog.resolve_tool(call.name or "")
        except ToolUnderReview as withheld:
            # Only an agent the policies let see the tool hears that it waits for review; to any
            # other, a withheld tool is as unknown as one that does not exist.
            if not isinstance(withheld.tool, ToolEntry) or not self._policy.visible_tools(call.origin, [withheld.tool]):
                raise UnknownTool(f"unknown tool '{call.name}': list the tools to see the available names") from None
            raise
        arguments = {} if call.arguments is None else call.arguments
        return Aimed(call.resolved(Target(entry.connector, entry.original), arguments=arguments), entry)

    def prepare(self, aimed: Aimed[ToolEntry]) -> Aimed[ToolEntry]:
        call, entry = aimed.call, aimed.entry
        if not isinstance(call.arguments, dict):
            raise InvalidArguments(f"arguments for '{entry.exposed}' must be a JSON object")
        if call.unusable_arguments is not None:
            raise UnusableArguments(f"invalid arguments for tool '{entry.exposed}': {call.unusable_arguments}")
        arguments, reasoning = _take_reasoning(entry, call)
        if arguments is call.arguments and reasoning == call.reasoning:
            return aimed  # the common case: nothing for the gateway in the arguments
        target = call.target or Target(entry.connector, entry.original)
        return Aimed(call.resolved(target, arguments=arguments, reasoning=reasoning), entry)

    def counted(self, aimed: Aimed[ToolEntry]) -> Aimed[ToolEntry]:
        call = aimed.call
        return Aimed(call.counted(self._rates.count(call.principal.agent, aimed.entry.exposed)), aimed.entry)

    def concealed(self, aimed: Aimed[ToolEntry], error: InvalidArguments) -> GatewayError:
        if self._policy.visible_tools(aimed.call.origin, (aimed.entry,)):
            return error
        return _unknown_tool(aimed.entry.exposed)

    def decide(self, aimed: Aimed[ToolEntry]) -> Decision:
        return self._policy.decide_call(aimed.call, aimed.entry)

    def refusal(self, aimed: Aimed[ToolEntry], decision: Decision) -> GatewayError:
        """A tool the agent may never call is reported as unknown, so probing names reveals nothing."""
        if decision.concealed:
            return _unknown_tool(aimed.entry.exposed)
        return _denied(decision)

    def hold(self, aimed: Aimed[ToolEntry], decision: Decision) -> HoldDecision:
        return self._policy.decide_hold(aimed.call, aimed.entry, decision=decision)

    def unusable(self, aimed: Aimed[ToolEntry], decision: Decision) -> UnusableArguments | None:
        """Arguments the agent can correct are not a policy's business; one that may not see the tool
        still hears "unknown tool", whatever its arguments."""
        if decision.invalid_arguments is None or decision.concealed:
            return None
        return UnusableArguments(
            f"invalid arguments for tool '{aimed.entry.exposed}': {decision.invalid_arguments}. "
            "Correct them to match the tool's input schema (see tools/list) and call again."
        )

    async def send(
        self, aimed: Aimed[ToolEntry], connector: Connector, on_progress: ProgressCallback | None
    ) -> JsonObject:
        call, entry = aimed.call, aimed.entry
        origin = call.origin
        caller = Caller(origin.principal.agent, origin.principal.user, origin.session_id, call.workflow)
        result = await connector.call_tool(
            entry.original,
            call.arguments,
            meta=inject_meta(forwardable_meta(call.meta)),
            on_progress=on_progress,
            caller=caller,
        )
        return expose_tool_result(entry.connector, result)


class _Unchecked(Generic[EntryT]):
    """A kind whose arguments the gateway passes on as they are, and whose requests are never held."""

    def __init__(self, catalog: Catalog, policy: PolicyDecisions) -> None:
        self._catalog = catalog
        self._policy = policy

    def prepare(self, aimed: Aimed[EntryT]) -> Aimed[EntryT]:
        return aimed

    def counted(self, aimed: Aimed[EntryT]) -> Aimed[EntryT]:
        return aimed

    def concealed(self, aimed: Aimed[EntryT], error: InvalidArguments) -> GatewayError:
        return error

    def unusable(self, aimed: Aimed[EntryT], decision: Decision) -> UnusableArguments | None:
        return None

    def hold(self, aimed: Aimed[EntryT], decision: Decision) -> HoldDecision:
        return NOT_HELD


class ResourceReads(_Unchecked[None]):
    """`resources/read`: the exposed `gateway://` URI mapped to the backend's own, and back in the result."""

    def find(self, call: Call, found: None) -> Aimed[None]:
        route = self._catalog.resolve_resource(call.name or "")
        return Aimed(call.resolved(Target(route.connector, route.uri)), None)

    def decide(self, aimed: Aimed[None]) -> Decision:
        return self._policy.decide_read_resource(aimed.call)

    def refusal(self, aimed: Aimed[None], decision: Decision) -> GatewayError:
        return _denied(decision)

    async def send(self, aimed: Aimed[None], connector: Connector, on_progress: ProgressCallback | None) -> JsonObject:
        call = aimed.call
        assert call.target is not None
        result = await connector.read_resource(call.target.original, meta=inject_meta(forwardable_meta(call.meta)))
        return expose_read_result(call.target.connector, result)


class PromptGets(_Unchecked[PromptEntry]):
    """`prompts/get`: string arguments passed as they are; a prompt the agent may not see is unknown."""

    def find(self, call: Call, found: PromptEntry | None) -> Aimed[PromptEntry]:
        entry = found if found is not None else self._catalog.resolve_prompt(call.name or "")
        return Aimed(call.resolved(Target(entry.connector, entry.original)), entry)

    def decide(self, aimed: Aimed[PromptEntry]) -> Decision:
        return self._policy.decide_get_prompt(aimed.call, aimed.entry)

    def refusal(self, aimed: Aimed[PromptEntry], decision: Decision) -> GatewayError:
        if decision.concealed:
            return _unknown_prompt(aimed.entry.exposed)
        return _denied(decision)

    async def send(
        self, aimed: Aimed[PromptEntry], connector: Connector, on_progress: ProgressCallback | None
    ) -> JsonObject:
        call, entry = aimed.call, aimed.entry
        result = await connector.get_prompt(
            entry.original, call.arguments, meta=inject_meta(forwardable_meta(call.meta))
        )
        return expose_prompt_result(entry.connector, result)


def _take_reasoning(entry: ToolEntry, call: Call) -> tuple[dict[str, Any], str | None]:
    """The arguments the backend may see, and the agent's reasoning from `_meta` or the added parameter.

    The added parameter is removed even when empty, so the backend's own schema validation never
    sees an argument it did not declare.
    """
    arguments: dict[str, Any] = call.arguments
    reasoning = call.reasoning
    parameter = entry.reasoning_parameter
    if parameter is not None and parameter in arguments:
        arguments = dict(arguments)
        stated = arguments.pop(parameter)
        if reasoning is None and isinstance(stated, str) and stated.strip():
            reasoning = stated.strip()
    if entry.reasoning == "required" and reasoning is None:
        where = f"the '{parameter}' argument" if parameter else f"params._meta['{REASONING_META_KEY}']"
        raise ReasoningRequired(
            f"'{entry.exposed}' needs your reasoning: call it again with {where} saying why you are "
            "calling it and what you expect it to do"
        )
    return arguments, reasoning
