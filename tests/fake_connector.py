"""An in-memory `Connector`: a backend whose offer and answers a test writes down.

Pipeline, front and catalog tests need a backend, but not a subprocess or a socket: this one
answers from a script, records what it was asked, and lets the test move its health and its
listing. It follows the protocol exactly (a test proves it), so whatever works against it
works against a real connector, minus the wire.

    crm = FakeConnector(
        "crm",
        tools=[tool("search"), tool("delete", annotations={"destructiveHint": True})],
        resources=[{"uri": "crm://accounts", "name": "accounts"}],
        prompts=[{"name": "summary"}],
        tool_results={
            "search": {"content": [{"type": "text", "text": "3 accounts"}]},
            "delete": BackendTimeout("backend 'crm' did not answer within 30s"),
        },
    )
    result = await crm.call_tool("search", {"q": "acme"}, meta=None, on_progress=None)
    assert crm.calls == [FakeCall("tools/call", "search", {"q": "acme"})]

Construction: `FakeConnector(name, *, tools=(), resources=(), resource_templates=(), prompts=(),
capabilities=None, tool_results=None, resource_results=None, prompt_results=None, handler=None,
on_listing=None, on_resource_updated=None)`. Definitions are wire dicts, as a backend lists them
(`tool(name, **fields)` makes a minimal tool). `capabilities` defaults to one entry per kind offered.

How a request is answered, first match wins:

1. health `unhealthy`, `starting` or `stopped`: `BackendUnavailable`, as a connector without a
   connection raises, and the request is not recorded (`degraded` serves, like a real one);
2. the script: `tool_results` by tool name, `resource_results` by the backend's resource URI,
   `prompt_results` by prompt name. A dict is answered (a deep copy each time, so a caller that
   changes its result does not change the script); an exception (any `gateway.errors` class:
   `BackendUnavailable`, `BackendTimeout`, `BackendError(message, code=..., data=...)`...) is raised;
3. `handler`, an `async (FakeCall) -> dict`: for latency, progress (`call.on_progress`), blocking
   until cancelled, or answers computed from the arguments; it may raise like a script entry;
4. the default: a listed tool answers its arguments as JSON text, a listed resource empty text,
   a listed prompt no messages; anything not listed is the `BackendError` a backend would send.

What a test can read and move:

- `calls`: every request received, in order, as `FakeCall(method, name, arguments, meta)` with
  `method` one of `tools/call`, `resources/read`, `prompts/get` and `name` the tool name, the
  resource URI or the prompt name; `on_progress` is carried too but not compared;
- `health`: settable, e.g. `Health(HealthState.UNHEALTHY, "connection refused")`;
- `listing`: settable without telling anyone; `await change_listing(listing)` also tells the
  `on_listing` listener, as a backend's `list_changed` does;
- `await resource_updated(uri)`: the backend says `uri` changed (tells `on_resource_updated`);
- `watched`: the URIs some `watching(...)` block currently asks updates for;
- lifecycle: `start(task_group)` marks it started and announces the listing to `on_listing`, as a
  connector does once connected (not when its health says it is down); `close()` makes health
  `stopped`. Neither is needed for calls.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import anyio.abc

from gateway.connectors.base import (
    Caller,
    Health,
    HealthState,
    JsonObject,
    Listing,
    ListingListener,
    ProgressCallback,
    ResourceUpdateListener,
)
from gateway.errors import BackendError, BackendUnavailable

#: JSON-RPC codes a backend answers unknown names with (MCP's own for a missing resource).
INVALID_PARAMS = -32602
RESOURCE_NOT_FOUND = -32002

_SERVING = frozenset({HealthState.HEALTHY, HealthState.DEGRADED})


@dataclass(frozen=True, slots=True)
class FakeCall:
    """One request the fake received; compare with `==` (the progress callback is not compared)."""

    method: str
    name: str
    arguments: Mapping[str, Any] | None = None
    meta: JsonObject | None = None
    on_progress: ProgressCallback | None = field(default=None, compare=False, repr=False)


Answer: TypeAlias = JsonObject | Exception
"""A scripted answer: a result dict to return, or an exception to raise."""

FakeHandler = Callable[[FakeCall], Awaitable[JsonObject]]


def tool(name: str, **fields: Any) -> JsonObject:
    """A minimal tool definition as a backend lists it; `fields` add or replace keys (`description=...`)."""
    return {"name": name, "inputSchema": {"type": "object"}, **fields}


class FakeConnector:
    """A `Connector` that answers from a script; see the module docstring for the whole API."""

    def __init__(
        self,
        name: str,
        *,
        tools: Iterable[JsonObject] = (),
        resources: Iterable[JsonObject] = (),
        resource_templates: Iterable[JsonObject] = (),
        prompts: Iterable[JsonObject] = (),
        capabilities: Mapping[str, Any] | None = None,
        tool_results: Mapping[str, Answer] | None = None,
        resource_results: Mapping[str, Answer] | None = None,
        prompt_results: Mapping[str, Answer] | None = None,
        handler: FakeHandler | None = None,
        on_listing: ListingListener | None = None,
        on_resource_updated: ResourceUpdateListener | None = None,
    ) -> None:
        listing = Listing(tuple(tools), tuple(resources), tuple(resource_templates), tuple(prompts))
        offered = {
            "tools": listing.tools,
            "resources": listing.resources or listing.resource_templates,
            "prompts": listing.prompts,
        }
        self._name = name
        self._listing = Listing(
            listing.tools,
            listing.resources,
            listing.resource_templates,
            listing.prompts,
            dict(capabilities) if capabilities is not None else {kind: {} for kind, items in offered.items() if items},
        )
        self._health = Health(HealthState.HEALTHY, "connected")
        self.tool_results: dict[str, Answer] = dict(tool_results or {})
        self.resource_results: dict[str, Answer] = dict(resource_results or {})
        self.prompt_results: dict[str, Answer] = dict(prompt_results or {})
        self.handler = handler
        self.calls: list[FakeCall] = []
        self.started = False
        self._on_listing = on_listing
        self._on_resource_updated = on_resource_updated
        self._watched: Counter[str] = Counter()

    @property
    def name(self) -> str:
        return self._name

    @property
    def health(self) -> Health:
        return self._health

    @health.setter
    def health(self, health: Health) -> None:
        self._health = health

    @property
    def listing(self) -> Listing:
        return self._listing

    @listing.setter
    def listing(self, listing: Listing) -> None:
        self._listing = listing

    @property
    def watched(self) -> frozenset[str]:
        return frozenset(self._watched)

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Connected at once: the listing is announced as a real connector's first one is.

        A fake whose health says it is down announces nothing, like a backend that could not be reached.
        """
        self.started = True
        if self._on_listing is not None and self._health.state in _SERVING:
            await self._on_listing(self._name, self._listing)

    async def close(self) -> None:
        self._health = Health(HealthState.STOPPED, "gateway shutting down")

    async def change_listing(self, listing: Listing) -> None:
        """The backend's offer changed: take `listing` and tell the listener, as `list_changed` would."""
        self._listing = listing
        if self._on_listing is not None:
            await self._on_listing(self._name, listing)

    async def resource_updated(self, uri: str) -> None:
        """The backend says its resource `uri` changed."""
        if self._on_resource_updated is not None:
            await self._on_resource_updated(self._name, uri)

    async def call_tool(
        self,
        name: str,
        arguments: JsonObject,
        *,
        meta: JsonObject | None,
        on_progress: ProgressCallback | None,
        caller: Caller | None = None,
    ) -> JsonObject:
        default: Answer = (
            {"content": [{"type": "text", "text": json.dumps(arguments, sort_keys=True)}]}
            if _listed(self._listing.tools, "name", name)
            else BackendError(f"Unknown tool: {name}", code=INVALID_PARAMS)
        )
        return await self._answer(
            FakeCall("tools/call", name, arguments, meta, on_progress), self.tool_results, default
        )

    async def read_resource(self, uri: str, *, meta: JsonObject | None) -> JsonObject:
        default: Answer = (
            {"contents": [{"uri": uri, "text": ""}]}
            if _listed(self._listing.resources, "uri", uri)
            else BackendError(f"Resource not found: {uri}", code=RESOURCE_NOT_FOUND, data={"uri": uri})
        )
        return await self._answer(FakeCall("resources/read", uri, None, meta), self.resource_results, default)

    async def get_prompt(self, name: str, arguments: dict[str, str] | None, *, meta: JsonObject | None) -> JsonObject:
        default: Answer = (
            {"messages": []}
            if _listed(self._listing.prompts, "name", name)
            else BackendError(f"Unknown prompt: {name}", code=INVALID_PARAMS)
        )
        return await self._answer(FakeCall("prompts/get", name, arguments, meta), self.prompt_results, default)

    def watching(self, uris: Iterable[str]) -> AbstractContextManager[None]:
        return self._watching(uris)

    @contextmanager
    def _watching(self, uris: Iterable[str]) -> Iterator[None]:
        added = Counter(dict.fromkeys(uris, 1))
        self._watched += added
        try:
            yield
        finally:
            self._watched -= added

    async def _answer(self, call: FakeCall, script: Mapping[str, Answer], default: Answer) -> JsonObject:
        if self._health.state not in _SERVING:
            raise BackendUnavailable(f"backend '{self._name}' is unavailable ({self._health.detail}); retry shortly")
        self.calls.append(call)
        if call.name in script:
            answer = script[call.name]
        elif self.handler is not None:
            return await self.handler(call)
        else:
            answer = default
        if isinstance(answer, Exception):
            raise answer
        return copy.deepcopy(answer)


def _listed(definitions: Iterable[JsonObject], key: str, value: str) -> bool:
    return any(definition.get(key) == value for definition in definitions)
