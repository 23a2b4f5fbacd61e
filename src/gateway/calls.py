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
        return cls(
            method,
            origin,
            name,
            arguments,
            meta,
            reasoning=meta_text(meta, REASONING_META_KEY),
            workflow=meta_text(meta, WORKFLOW_META_KEY),
            unusable_arguments=unusable_arguments,
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
            rate,
        )


def meta_text(meta: Mapping[str, Any] | None, key: str) -> str | None:
    """A non-empty text value of `_meta`, or None."""
    value = meta.get(key) if meta else None
    return value if isinstance(value, str) and value else None
