"""The object a connector author builds: tools, lifecycle hooks, health, and the settings it is given.

One object serves both ways of running: the gateway calls it directly in its own process, or
`gateway.sdk.serve` puts it behind an MCP server in a child process. Either way the author
writes the same code, and the gateway governs its tools like any backend's.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.sdk.tools import JsonObject, Tool, ToolAnnotations, describe_validation, error_result

SettingsT = TypeVar("SettingsT", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])
Hook = Callable[[], Awaitable[None] | None]
HealthHook = Callable[[], Awaitable[str | None] | str | None]


class SettingsError(ValueError):
    """The connector file's `settings` do not fit the connector's settings model."""


class Connector(Generic[SettingsT]):
    """A Python connector: `connector = Connector("crm", settings=CrmSettings)`, then `@connector.tool()`.

    `settings` is an optional pydantic model; the connector file's `settings = {...}` table is
    validated against it at start and read by the tools as `connector.settings`.
    """

    def __init__(self, name: str, *, settings: type[SettingsT] | None = None, description: str = "") -> None:
        self.name = name
        self.description = description
        self._settings_model = settings
        self._settings: SettingsT | None = None
        self._raw_settings: Mapping[str, Any] = {}
        self._tools: dict[str, Tool] = {}
        self._on_start: list[Hook] = []
        self._on_close: list[Hook] = []
        self._health: HealthHook | None = None

    # -- declaring -------------------------------------------------------------------------------

    def tool(
        self,
        name: str | None = None,
        *,
        description: str | None = None,
        title: str | None = None,
        read_only: bool | None = None,
        destructive: bool | None = None,
        idempotent: bool | None = None,
        open_world: bool | None = None,
    ) -> Callable[[F], F]:
        """Make a function a tool: its typed parameters are the input schema, its docstring the description."""
        hints = ToolAnnotations(read_only, destructive, idempotent, open_world, title)

        def register(function: F) -> F:
            tool = Tool.from_function(function, name=name, description=description, annotations=hints)
            if tool.name in self._tools:
                raise ValueError(f"connector {self.name!r} already has a tool named {tool.name!r}")
            self._tools[tool.name] = tool
            return function

        return register

    def on_start(self, hook: Hook) -> Hook:
        """Run at start (open a client, check credentials); raising marks the connector unhealthy and retried."""
        self._on_start.append(hook)
        return hook

    def on_close(self, hook: Hook) -> Hook:
        """Run at close (let go of what `on_start` opened)."""
        self._on_close.append(hook)
        return hook

    def health(self, hook: HealthHook) -> HealthHook:
        """Report health: return None or a detail when healthy; raise to say what is wrong."""
        self._health = hook
        return hook

    # -- what the gateway uses -------------------------------------------------------------------

    @property
    def settings(self) -> SettingsT:
        """The validated settings; available from `on_start` on."""
        if self._settings is None:
            raise RuntimeError(f"connector {self.name!r} has no settings model, or has not started")
        return self._settings

    @property
    def raw_settings(self) -> Mapping[str, Any]:
        """The connector file's `settings` table as given, for a connector with no settings model."""
        return self._raw_settings

    @property
    def tools(self) -> Mapping[str, Tool]:
        return self._tools

    def definitions(self) -> list[JsonObject]:
        return [tool.definition() for tool in self._tools.values()]

    async def start(self, settings: Mapping[str, Any] | None = None) -> None:
        self._raw_settings = dict(settings or {})
        if self._settings_model is not None:
            try:
                self._settings = self._settings_model.model_validate(self._raw_settings)
            except ValidationError as exc:
                raise SettingsError(
                    f"settings do not fit {self._settings_model.__name__}: {describe_validation(exc)}"
                ) from None
        for hook in self._on_start:
            await _maybe_await(hook())

    async def close(self) -> None:
        for hook in reversed(self._on_close):
            await _maybe_await(hook())

    async def check_health(self) -> str | None:
        """None or a detail when healthy; raises when not."""
        if self._health is None:
            return None
        detail = await _maybe_await(self._health())
        return None if detail is None else str(detail)

    async def call(self, name: str, arguments: JsonObject | None) -> JsonObject:
        tool = self._tools.get(name)
        if tool is None:
            return error_result(f"Unknown tool {name!r}: this connector has {', '.join(self._tools) or 'no tools'}.")
        return await tool.call(arguments or {}, connector=self.name)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value
