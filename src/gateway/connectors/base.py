"""The seam every backend kind plugs into.

The pipeline talks to backends only through `Connector`; it never knows whether a tool lives
in a subprocess, behind HTTP or in a REST API. Listings and results travel as wire-format
dicts (the JSON the MCP spec defines), so results can pass through to the agent unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import anyio.abc

JsonObject = dict[str, Any]

ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None]]
"""Receives a backend's progress notifications for one call: (progress, total, message)."""


class HealthState(StrEnum):
    STARTING = "starting"
    HEALTHY = "healthy"
    #: Connected and serving calls, but part or all of its latest listing was refused (see `problems`).
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Health:
    """What `/readyz` and `gateway tools list` say about one backend."""

    state: HealthState
    detail: str = ""
    protocol_version: str | None = None
    restarts: int = 0
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Listing:
    """Everything one backend offers, as wire dicts, captured at connect and on `list_changed`."""

    tools: tuple[JsonObject, ...] = ()
    resources: tuple[JsonObject, ...] = ()
    resource_templates: tuple[JsonObject, ...] = ()
    prompts: tuple[JsonObject, ...] = ()
    capabilities: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a call is made for, as the gateway authenticated them.

    MCP backends never see it: the gateway speaks to them as itself, and an agent's credentials
    never pass through. Connectors that answer from the gateway's own records (its built-in
    tools) read it to show an agent only what is its own.
    """

    agent: str
    user: str | None = None
    session_id: str | None = None
    workflow: str | None = None


ListingListener = Callable[[str, Listing], Awaitable[None]]
"""Called with (connector name, new listing) whenever a backend's offer changes."""

ResourceUpdateListener = Callable[[str, str], Awaitable[None]]
"""Called with (connector name, the backend's resource URI) when a backend says that resource changed."""


class Connector(Protocol):
    """One backend. Methods raise only `gateway.errors` classes.

    A connector is started once and closed once. `start` takes the gateway's task group because
    a backend usually needs work that outlives the call that started it (a supervised session, a
    listing refresh, a token renewal); a connector with nothing to run ignores it. Nothing it runs
    may outlive `close` by more than the task group's cancellation.
    """

    @property
    def name(self) -> str: ...

    @property
    def health(self) -> Health: ...

    @property
    def listing(self) -> Listing: ...

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Begin connecting; returns after the first attempt, connected or not (the gateway starts anyway)."""

    async def close(self) -> None:
        """Stop: health says `stopped`, and the backend is let go as the task group winds down."""

    async def call_tool(
        self,
        name: str,
        arguments: JsonObject,
        *,
        meta: JsonObject | None,
        on_progress: ProgressCallback | None,
        caller: Caller | None = None,
    ) -> JsonObject: ...

    async def read_resource(self, uri: str, *, meta: JsonObject | None) -> JsonObject: ...

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None, *, meta: JsonObject | None
    ) -> JsonObject: ...

    def watching(self, uris: Iterable[str]) -> AbstractContextManager[None]:
        """Have the backend send updates to its resources `uris` while the block runs."""
