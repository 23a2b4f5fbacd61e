"""One agent request as every stage sees it: built once by the front, never changed in place.

A request travels the pipeline as a `Call`: who asks and over which connection (`Origin`), what
it asks for (`method`, `name`, `arguments`), why (`reasoning`) and in which workflow. Policy,
audit, forwarding and telemetry all read the same value, so a new stage (a hold, a lock) takes
one argument and sees everything its neighbours see. Resolution adds the `Target` (the backend
connector and the name it knows) and the arguments the backend may see, as a new value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.identity.principal import Principal

#: Where an agent states why it makes a call, and which workflow the call belongs to (`params._meta`).
REASONING_META_KEY = "io.autonomy-gateway/reasoning"
WORKFLOW_META_KEY = "io.autonomy-gateway/workflow"
#: The HTTP header naming a call's workflow, for clients that cannot set `_meta` (lower case, as ASGI gives it).
WORKFLOW_HEADER = "x-workflow-id"
#: The longest workflow id: what the audit log and approvals index (`workflow_id`, 256 characters).
MAX_WORKFLOW_ID = 256


def workflow_id_problem(value: object, source: str) -> str | None:
    """Why `value` cannot name a workflow (a sentence for the agent), or None when it can.

    A workflow id is shown in timelines, consoles and the CLI and compared by policies, so it
    must be short printable text: no control characters that could forge a line in a listing.
    """
    if not isinstance(value, str) or not value.strip():
        return f"the workflow id in {source} must be a non-empty string; send one, or leave it out"
    if len(value) > MAX_WORKFLOW_ID:
        return (
            f"the workflow id in {source} is {len(value)} characters long; at most {MAX_WORKFLOW_ID} are accepted. "
            "Use a shorter id (a UUID or a case number)"
        )
    if not value.isprintable():
        return (
            f"the workflow id in {source} contains control or non-printable characters; "
            "use printable text only (letters, digits, punctuation, spaces)"
        )
    return None


@dataclass(frozen=True, slots=True)
class WorkflowState:
    """What a workflow did so far, as policies see it in `context.workflow`.

    Read from the database only for a call whose policies look at it (see `policy.slices`).
    """

    completed: frozenset[str] = frozenset()
    agents: frozenset[str] = frozenset()


NO_WORKFLOW_STATE = WorkflowState()


@dataclass(frozen=True, slots=True)
class Origin:
    """Who asks and over which connection: the same for every request a connection sends, bar `request_id`."""

    principal: Principal
    request_id: str | int | None = None
    session_id: str | None = None
    protocol_version: str | None = None
    client_name: str | None = None
    client_version: str | None = None
    #: `network.transport`: "tcp" for streamable HTTP, "pipe" for stdio.
    transport: str | None = None
    #: The HTTP request's trace headers, read when no SDK span already carries the agent's trace context.
    trace_headers: Mapping[str, str] | None = None
    #: The workflow the HTTP request's `X-Workflow-Id` header names (checked by the front).
    workflow: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """What a request names, once resolved: the backend connector and the name (or URI) it knows."""

    connector: str
    original: str


@dataclass(frozen=True, slots=True)
class RateCounts:
    """How many tool calls the agent made lately, this one included, as policies see them (`context.rate`).

    Every call that reached a decision counts, refused ones too: a burst of refused calls is a
    burst, and an agent that keeps retrying a refused call stays refused until it slows down.
    """

    #: Calls by this agent in the last 60 seconds, to any tool.
    minute: int
    #: Calls by this agent in the last 60 minutes, to any tool.
    hour: int
    #: Calls by this agent to this tool in the last 60 seconds.
    tool_minute: int
    #: Calls by this agent to this tool in the last 60 minutes.
    tool_hour: int

    def cedar(self) -> dict[str, int]:
        return {"minute": self.minute, "hour": self.hour, "tool_minute": self.tool_minute, "tool_hour": self.tool_hour}


#: What a call decided outside the gateway's counting (`gateway policy explain`) is taken to be: the only one.
THIS_CALL_ONLY = RateCounts(1, 1, 1, 1)


@dataclass(frozen=True, slots=True)
class Call:
    """One request: `tools/call`, `resources/read`, `prompts/get`, or a listing (`name` is None).

    `name` is what the agent sent (an exposed tool or prompt name, an exposed resource URI).
    `unusable_arguments` is set by a front that found the arguments unusable (text that is not
    valid Unicode): the call is refused as invalid arguments once resolved.

    `workflow` is the `_meta` key's, else the `X-Workflow-Id` header's, else the client's MCP
    session id (HTTP only); `workflow_problem` says why the `_meta` value cannot be one (the call
    is refused). `workflow_state` is filled in before deciding, for policies that read it.
    """

    method: str
    origin: Origin
    name: str | None = None
    arguments: Any = None
    meta: Mapping[str, Any] | None = None
    reasoning: str | None = None
    workflow: str | None = None
    target: Target | None = None
    unusable_arguments: str | None = None
    workflow_problem: str | None = None
    workflow_state: WorkflowState | None = None
    #: The agent's recent calls, counted as this one arrived (tool calls only; see `RateCounts`).
    rate: RateCounts | None = None

    @classmethod
    def of(
        cls,
        method: str,
        origin: Origin,
        name: str | None = None,
        arguments: Any = None,
        meta: Mapping[str, Any] | None = None,
        *,
        unusable_arguments: str | None = None,
    ) -> Call:
        """The call as the front received it, with reasoning and workflow read from `_meta`."""
        workflow, problem = _workflow_of(meta, origin)
        return cls(
            method,
            origin,
            name,
            arguments,
            meta,
            reasoning=meta_text(meta, REASONING_META_KEY),
            workflow=workflow,
            unusable_arguments=unusable_arguments,
            workflow_problem=problem,
        )

    @property
    def principal(self) -> Principal:
        return self.origin.principal

    @property
    def connector(self) -> str | None:
        return self.target.connector if self.target is not None else None

    def resolved(self, target: Target, *, arguments: Any = None, reasoning: str | None = None) -> Call:
        """This call aimed at `target`, with the arguments the backend may see and the stated reasoning.

        Built field by field rather than with `dataclasses.replace`, which costs twice as much on
        a path every call takes twice.
        """
        return Call(
            self.method,
            self.origin,
            self.name,
            self.arguments if arguments is None else arguments,
            self.meta,
            self.reasoning if reasoning is None else reasoning,
            self.workflow,
            target,
            self.unusable_arguments,
            self.workflow_problem,
            self.workflow_state,
            self.rate,
        )

    def counted(self, rate: RateCounts) -> Call:
        """This call with the agent's recent calls counted (the context stage's part)."""
        return Call(
            self.method,
            self.origin,
            self.name,
            self.arguments,
            self.meta,
            self.reasoning,
            self.workflow,
            self.target,
            self.unusable_arguments,
            self.workflow_problem,
            self.workflow_state,
            rate,
        )

    def with_workflow_state(self, state: WorkflowState) -> Call:
        """This call with what its workflow did so far, for the policies that read it."""
        return Call(
            self.method,
            self.origin,
            self.name,
            self.arguments,
            self.meta,
            self.reasoning,
            self.workflow,
            self.target,
            self.unusable_arguments,
            self.workflow_problem,
            state,
            self.rate,
        )


def _workflow_of(meta: Mapping[str, Any] | None, origin: Origin) -> tuple[str | None, str | None]:
    """The call's workflow and, when `_meta` names an unusable one, why (the session is no fallback then)."""
    if meta and WORKFLOW_META_KEY in meta:
        value = meta[WORKFLOW_META_KEY]
        problem = workflow_id_problem(value, f"_meta[{WORKFLOW_META_KEY!r}]")
        return (None, problem) if problem is not None else (value, None)
    if origin.workflow is not None:
        return origin.workflow, None
    # A stdio client has no MCP session id of its own ("stdio" is every such client's).
    if origin.transport == "tcp" and origin.session_id:
        return origin.session_id, None
    return None, None


def meta_text(meta: Mapping[str, Any] | None, key: str) -> str | None:
    """A non-empty text value of `_meta`, or None."""
    value = meta.get(key) if meta else None
    return value if isinstance(value, str) and value else None
