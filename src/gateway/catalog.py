"""Every backend's tools, resources and prompts under one namespace.

An agent sees `<connector><separator><name>` (default `crm__search_customers`). Exposed tool
and prompt names must be valid function names for the major LLM APIs (`[A-Za-z0-9_-]`, at
most 64 characters), so characters outside that set are replaced and long names are
shortened deterministically: the same connector and tool always get the same exposed name,
and `gateway tools list` shows the mapping. The catalog is rebuilt per connector whenever a
backend's listing changes and swapped in whole, so a request never sees a half-updated view.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gateway.config import McpHttpConnector, McpStdioConnector, ReasoningSettings, ToolOverride
from gateway.connectors.base import JsonObject, Listing
from gateway.errors import UnknownPrompt, UnknownResource, UnknownTool

MAX_NAME_LENGTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_DIGEST_LENGTH = 8


def exposed_name(connector: str, original: str, separator: str) -> str:
    """The name an agent sees for a backend's tool or prompt; stable for the same inputs."""
    candidate = _UNSAFE.sub("_", f"{connector}{separator}{original}")
    if len(candidate) <= MAX_NAME_LENGTH and candidate == f"{connector}{separator}{original}":
        return candidate
    # Rewritten or too long: a digest of the true name keeps distinct tools distinct.
    digest = hashlib.sha256(f"{connector}\0{original}".encode()).hexdigest()[:_DIGEST_LENGTH]
    if len(candidate) + 1 + _DIGEST_LENGTH <= MAX_NAME_LENGTH:
        return f"{candidate}_{digest}"
    return f"{candidate[: MAX_NAME_LENGTH - 1 - _DIGEST_LENGTH]}_{digest}"


@dataclass(frozen=True, slots=True)
class ToolEntry:
    """One exposed tool: where it lives and the definition an agent is shown."""

    exposed: str
    connector: str
    original: str
    definition: Mapping[str, Any]
    labels: tuple[str, ...] = ()
    input_schema: Mapping[str, Any] | None = None
    reasoning: str = "off"
    reasoning_parameter: str | None = None

    @property
    def annotations(self) -> Mapping[str, Any]:
        return self.definition.get("annotations") or {}

    @property
    def backend_input_schema(self) -> Mapping[str, Any] | None:
        """The backend's own input schema, without the reasoning parameter the gateway adds."""
        return self.input_schema if self.input_schema is not None else self.definition.get("inputSchema")


@dataclass(frozen=True, slots=True)
class PromptEntry:
    exposed: str
    connector: str
    original: str
    definition: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ResourceRoute:
    """Which backend serves a resource URI, found by exact URI or by URI template."""

    connector: str
    uri: str


@dataclass(frozen=True, slots=True)
class _ConnectorView:
    tools: tuple[ToolEntry, ...] = ()
    prompts: tuple[PromptEntry, ...] = ()
    resources: tuple[JsonObject, ...] = ()
    templates: tuple[JsonObject, ...] = ()
    template_patterns: tuple[re.Pattern[str], ...] = ()
    resource_uris: frozenset[str] = field(default_factory=frozenset)


class Catalog:
    """The aggregated offer of all connectors, in connector order."""

    def __init__(
        self,
        connectors: Iterable[McpStdioConnector | McpHttpConnector],
        *,
        separator: str = "__",
        reasoning: ReasoningSettings | None = None,
    ) -> None:
        self._settings = {c.name: c for c in connectors}
        self._separator = separator
        self._reasoning = reasoning or ReasoningSettings()
        self._views: dict[str, _ConnectorView] = {name: _ConnectorView() for name in self._settings}
        self._listed: set[str] = set()
        self._tools: Mapping[str, ToolEntry] = MappingProxyType({})
        self._prompts: Mapping[str, PromptEntry] = MappingProxyType({})

    @property
    def separator(self) -> str:
        return self._separator

    def update(self, connector: str, listing: Listing) -> bool:
        """Take a connector's new listing; returns whether anything an agent sees changed."""
        settings = self._settings[connector]
        tools = tuple(self._tool_entries(settings, listing.tools))
        prompts = tuple(
            PromptEntry(
                exposed=(name := exposed_name(connector, p["name"], self._separator)),
                connector=connector,
                original=p["name"],
                definition=MappingProxyType({**p, "name": name}),
            )
            for p in listing.prompts
        )
        resources = tuple(
            {**r, "name": exposed_name(connector, str(r.get("name", "")), self._separator)} for r in listing.resources
        )
        templates = tuple(
            {**t, "name": exposed_name(connector, str(t.get("name", "")), self._separator)}
            for t in listing.resource_templates
        )
        view = _ConnectorView(
            tools=tools,
            prompts=prompts,
            resources=resources,
            templates=templates,
            template_patterns=tuple(_template_pattern(t["uriTemplate"]) for t in listing.resource_templates),
            resource_uris=frozenset(str(r["uri"]) for r in listing.resources),
        )
        previous = self._views.get(connector)
        first = connector not in self._listed
        self._listed.add(connector)
        self._views[connector] = view
        self._rebuild_indexes()
        # A first listing counts as a change even when empty: policies waiting for it are re-validated.
        return first or previous != view

    def unlisted_connectors(self) -> tuple[str, ...]:
        """Connectors that have never listed (down since start and nothing stored): their offer is unknown."""
        return tuple(name for name in self._settings if name not in self._listed)

    def configured_labels(self, connector: str) -> frozenset[str]:
        """Every label the connector's file gives, to it or to one of its tools, whether listed or not."""
        settings = self._settings[connector]
        return frozenset(
            (*settings.labels, *(label for override in settings.tools.values() for label in override.labels))
        )

    def _tool_entries(
        self, settings: McpStdioConnector | McpHttpConnector, definitions: Iterable[JsonObject]
    ) -> Iterable[ToolEntry]:
        for definition in definitions:
            original = definition["name"]
            override = settings.tools.get(original, ToolOverride())
            if not override.enabled:
                continue
            name = exposed_name(settings.name, original, self._separator)
            shown = {**definition, "name": name}
            if override.description is not None:
                shown["description"] = override.description
            mode = override.reasoning or settings.reasoning or self._reasoning.mode
            parameter = self._reasoning.parameter
            schema = definition.get("inputSchema")
            if mode != "off" and _can_add_parameter(schema, parameter):
                shown["inputSchema"] = _with_reasoning(schema, parameter, self._reasoning.description, mode)
            else:
                parameter = None  # the tool has an argument of that name: reasoning only via _meta
            yield ToolEntry(
                exposed=name,
                connector=settings.name,
                original=original,
                definition=MappingProxyType(shown),
                labels=tuple(dict.fromkeys((*settings.labels, *override.labels))),
                input_schema=schema,
                reasoning=mode,
                reasoning_parameter=parameter if mode != "off" else None,
            )

    def _rebuild_indexes(self) -> None:
        tools: dict[str, ToolEntry] = {}
        prompts: dict[str, PromptEntry] = {}
        for view in self._views.values():
            for tool in view.tools:
                tools.setdefault(tool.exposed, tool)
            for prompt in view.prompts:
                prompts.setdefault(prompt.exposed, prompt)
        self._tools = MappingProxyType(tools)
        self._prompts = MappingProxyType(prompts)

    # -- lookups -----------------------------------------------------------------------------

    def tools(self) -> Iterable[ToolEntry]:
        return self._tools.values()

    def prompts(self) -> Iterable[PromptEntry]:
        return self._prompts.values()

    def resources(self) -> list[tuple[str, JsonObject]]:
        """(connector, resource) pairs; URIs are kept, and when two backends offer one URI the first wins."""
        return _first_by_key(((c, r) for c, view in self._views.items() for r in view.resources), "uri")

    def resource_templates(self) -> list[tuple[str, JsonObject]]:
        """(connector, template) pairs; an identical template offered twice is served by the first connector."""
        return _first_by_key(((c, t) for c, view in self._views.items() for t in view.templates), "uriTemplate")

    def resolve_tool(self, exposed: str) -> ToolEntry:
        try:
            return self._tools[exposed]
        except KeyError:
            raise UnknownTool(f"unknown tool '{exposed}': list the tools to see the available names") from None

    def resolve_prompt(self, exposed: str) -> PromptEntry:
        try:
            return self._prompts[exposed]
        except KeyError:
            raise UnknownPrompt(f"unknown prompt '{exposed}': list the prompts to see the available names") from None

    def resolve_resource(self, uri: str) -> ResourceRoute:
        """Exact URIs win over templates; a URI two backends could serve is refused, not guessed."""
        for connector, view in self._views.items():
            if uri in view.resource_uris:
                return ResourceRoute(connector, uri)
        matches = [
            (connector, template["uriTemplate"])
            for connector, view in self._views.items()
            for template, pattern in zip(view.templates, view.template_patterns)
            if pattern.fullmatch(uri)
        ]
        if matches and len({template for _, template in matches}) == 1:
            return ResourceRoute(matches[0][0], uri)  # one template, first connector wins as in the listing
        if matches:
            owners = ", ".join(dict.fromkeys(connector for connector, _ in matches))
            raise UnknownResource(f"resource '{uri}' matches different templates of several backends: {owners}")
        raise UnknownResource(f"unknown resource '{uri}': list resources and templates to see what exists")


def _can_add_parameter(schema: Any, parameter: str) -> bool:
    if schema is None:
        return True
    if not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
        return False
    return parameter not in (schema.get("properties") or {})


def _with_reasoning(schema: Any, parameter: str, description: str, mode: str) -> JsonObject:
    """The tool's input schema with the reasoning parameter added (required in `required` mode)."""
    base = dict(schema) if isinstance(schema, Mapping) else {"type": "object"}
    base.setdefault("type", "object")
    base["properties"] = {**(base.get("properties") or {}), parameter: {"type": "string", "description": description}}
    if mode == "required":
        base["required"] = [*(base.get("required") or []), parameter]
    return base


def _first_by_key(items: Iterable[tuple[str, JsonObject]], key: str) -> list[tuple[str, JsonObject]]:
    first: dict[str, tuple[str, JsonObject]] = {}
    for connector, item in items:
        first.setdefault(str(item.get(key)), (connector, item))
    return list(first.values())


def _template_pattern(template: str) -> re.Pattern[str]:
    """A regex for an RFC 6570 template, enough to route a URI to the backend that declared it."""
    parts = re.split(r"(\{[^}]*\})", template)
    return re.compile("".join(_expression_pattern(part) if part.startswith("{") else re.escape(part) for part in parts))


def _expression_pattern(expression: str) -> str:
    operator = expression[1:2]
    if operator in ("?", "&", "#"):
        return ".*"
    if operator in ("+", "/", ".", ";"):
        return ".+"
    return "[^/?#]+"
