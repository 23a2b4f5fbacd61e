"""Every backend's tools, resources and prompts under one namespace.

An agent sees `<connector><separator><name>` (default `crm__search_customers`). Exposed tool
and prompt names must be valid function names for the major LLM APIs (`[A-Za-z0-9_-]`, at
most 64 characters), so characters outside that set are replaced and long names are
shortened deterministically: the same connector and tool always get the same exposed name,
and `gateway tools list` shows the mapping. The catalog is rebuilt per connector whenever a
backend's listing changes and swapped in whole, so a request never sees a half-updated view.

Two mistakes are only visible once a backend has listed, so the catalog finds them and never
guesses: a `[tools.<name>]` override that names no listed tool (a typo that would leave the
tool it meant unrestricted) withholds every tool of that connector until the file is fixed,
and two tools or prompts that end up with one exposed name are both refused, so neither
backend can stand in for the other. Each becomes a problem of the connectors concerned, shown
in `/readyz`, the log and the CLI.

Resource URIs and templates are exposed as `gateway://<connector>/<the backend's URI>`, so two
backends' identical URIs stay two resources (the rule is `gateway.resource_uris`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gateway.catalog.definitions import definition_digest
from gateway.catalog.entries import PromptEntry, ResourceEntry, ResourceRoute, ToolEntry
from gateway.catalog.pins import PinBook, Verdict
from gateway.catalog.problems import by_exposed_name, collision_problem, unknown_lock_paths, unknown_overrides
from gateway.connectors.base import JsonObject, Listing
from gateway.errors import ToolUnderReview, UnknownPrompt, UnknownResource, UnknownTool
from gateway.resource_uris import exposed_uri, split_uri
from gateway.settings.connectors import GATEWAY_TOOLS_CONNECTOR, ConnectorBase, ToolOverride
from gateway.settings.reasoning import ReasoningSettings

MAX_NAME_LENGTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_DIGEST_LENGTH = 8
logger = logging.getLogger(__name__)


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
class _ConnectorView:
    tools: tuple[ToolEntry, ...] = ()
    #: Tools not served while the connector file has a problem; policies may still name them.
    withheld: tuple[ToolEntry, ...] = ()
    #: Tools whose definition waits for an admin (quarantined or held), with their verdict.
    pending: tuple[tuple[ToolEntry, Verdict], ...] = ()
    problems: tuple[str, ...] = ()
    prompts: tuple[PromptEntry, ...] = ()
    resources: tuple[ResourceEntry, ...] = ()
    templates: tuple[ResourceEntry, ...] = ()


class Catalog:
    """The aggregated offer of all connectors, in connector order."""

    def __init__(
        self,
        connectors: Iterable[ConnectorBase],
        *,
        separator: str = "__",
        reasoning: ReasoningSettings | None = None,
        pins: PinBook | None = None,
    ) -> None:
        self._settings = {c.name: c for c in connectors}
        #: Pinned definitions; None (the CLI's live look, tests) serves every tool as listed.
        self._pins = pins
        self._listings: dict[str, Listing] = {}
        self._pending: Mapping[str, tuple[ToolEntry, Verdict]] = MappingProxyType({})
        self._separator = separator
        self._reasoning = reasoning or ReasoningSettings()
        self._views: dict[str, _ConnectorView] = {name: _ConnectorView() for name in self._settings}
        self._listed: set[str] = set()
        self._tools: Mapping[str, ToolEntry] = MappingProxyType({})
        self._policy_tools: tuple[ToolEntry, ...] = ()
        self._prompts: Mapping[str, PromptEntry] = MappingProxyType({})
        self._problems: Mapping[str, tuple[str, ...]] = MappingProxyType({})

    @property
    def separator(self) -> str:
        return self._separator

    def update(self, connector: str, listing: Listing) -> bool:
        """Take a connector's new listing; returns whether anything an agent sees changed."""
        settings = self._settings[connector]
        self._listings[connector] = listing
        tools, pending = self._pinned(connector, listing.tools, tuple(self._tool_entries(settings, listing.tools)))
        problems = (*unknown_overrides(settings, listing.tools), *unknown_lock_paths(settings, listing.tools))
        withheld: tuple[ToolEntry, ...] = ()
        if problems:
            tools, withheld = (), tools
        prompts = tuple(
            PromptEntry(
                exposed=(name := exposed_name(connector, p["name"], self._separator)),
                connector=connector,
                original=p["name"],
                definition=MappingProxyType({**p, "name": name}),
            )
            for p in listing.prompts
        )
        view = _ConnectorView(
            tools=tools,
            withheld=withheld,
            pending=pending,
            problems=problems,
            prompts=prompts,
            resources=self._resource_entries(connector, listing.resources, "uri"),
            templates=self._resource_entries(connector, listing.resource_templates, "uriTemplate"),
        )
        previous = self._views.get(connector)
        first = connector not in self._listed
        self._listed.add(connector)
        self._views[connector] = view
        self._rebuild_indexes()
        # A first listing counts as a change even when empty: policies waiting for it are re-validated.
        return first or previous != view

    def refresh(self) -> tuple[str, ...]:
        """Re-apply the pins to every connector's last listing; returns the connectors whose view changed."""
        return tuple(name for name, listing in list(self._listings.items()) if self.update(name, listing))

    def listing(self, connector: str) -> Listing | None:
        """The connector's last listing as the backend sent it (bounded), or None before its first."""
        return self._listings.get(connector)

    def _pinned(
        self, connector: str, definitions: Sequence[JsonObject], entries: tuple[ToolEntry, ...]
    ) -> tuple[tuple[ToolEntry, ...], tuple[tuple[ToolEntry, Verdict], ...]]:
        """Split the connector's tools into served ones and those waiting for review (`gateway.catalog.pins`)."""
        if self._pins is None or not entries or connector == GATEWAY_TOOLS_CONNECTOR:
            return entries, ()
        raw = {definition["name"]: definition for definition in definitions}
        served: list[ToolEntry] = []
        pending: list[tuple[ToolEntry, Verdict]] = []
        for entry in entries:
            verdict = self._pins.verdict(connector, entry.original, definition_digest(raw[entry.original]))
            if verdict is Verdict.SERVED:
                served.append(entry)
            else:
                pending.append((entry, verdict))
        return tuple(served), tuple(pending)

    def unlisted_connectors(self) -> tuple[str, ...]:
        """Connectors that have never listed (down since start and nothing stored): their offer is unknown."""
        return tuple(name for name in self._settings if name not in self._listed)

    def configured_labels(self, connector: str) -> frozenset[str]:
        """Every label the connector's file gives, to it or to one of its tools, whether listed or not."""
        settings = self._settings[connector]
        return frozenset(
            (*settings.labels, *(label for override in settings.tools.values() for label in override.labels))
        )

    def _tool_entries(self, settings: ConnectorBase, definitions: Iterable[JsonObject]) -> Iterable[ToolEntry]:
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
            schema = definition.get("inputSchema")
            # A tool with an argument of the parameter's name gets reasoning only via _meta.
            parameter: str | None = None
            if mode != "off" and _can_add_parameter(schema, self._reasoning.parameter):
                parameter = self._reasoning.parameter
                shown["inputSchema"] = _with_reasoning(schema, parameter, self._reasoning.description, mode)
            yield ToolEntry(
                exposed=name,
                connector=settings.name,
                original=original,
                definition=MappingProxyType(shown),
                labels=tuple(dict.fromkeys((*settings.labels, *override.labels))),
                input_schema=schema,
                reasoning=mode,
                reasoning_parameter=parameter,
                share_result=override.share_result,
            )

    def _resource_entries(
        self, connector: str, definitions: Iterable[JsonObject], key: str
    ) -> tuple[ResourceEntry, ...]:
        """A backend's resources (`key` "uri") or templates ("uriTemplate"), each URI once, exposed."""
        entries: dict[str, ResourceEntry] = {}
        for definition in definitions:
            original = str(definition[key])
            exposed = exposed_uri(connector, original)
            name = exposed_name(connector, str(definition.get("name", "")), self._separator)
            entries.setdefault(
                exposed,
                ResourceEntry(
                    exposed, connector, original, MappingProxyType({**definition, key: exposed, "name": name})
                ),
            )
        return tuple(entries.values())

    def _rebuild_indexes(self) -> None:
        """Index every exposed name; a name two different tools (or prompts) would share serves neither."""
        views = self._views.values()
        every_tool, clashing_tools = by_exposed_name(
            t for view in views for t in (*view.tools, *view.withheld, *(entry for entry, _ in view.pending))
        )
        prompts, clashing_prompts = by_exposed_name(prompt for view in views for prompt in view.prompts)
        problems: dict[str, tuple[str, ...]] = {name: view.problems for name, view in self._views.items()}
        clashes: list[tuple[str, Sequence[ToolEntry | PromptEntry]]] = [
            *(("tools", clash) for clash in clashing_tools.values()),
            *(("prompts", clash) for clash in clashing_prompts.values()),
        ]
        for kind, clash in clashes:
            problem = collision_problem(kind, clash)
            for connector in dict.fromkeys(entry.connector for entry in clash):
                problems[connector] = (*problems[connector], problem)
        self._log_new_problems(problems)
        served = {tool.exposed for view in views for tool in view.tools}
        self._tools = MappingProxyType({name: tool for name, tool in every_tool.items() if name in served})
        self._pending = MappingProxyType(
            {entry.exposed: (entry, verdict) for view in views for entry, verdict in view.pending}
        )
        self._policy_tools = tuple(every_tool.values())
        self._prompts = MappingProxyType(prompts)
        self._problems = MappingProxyType({name: found for name, found in problems.items() if found})

    def _log_new_problems(self, problems: Mapping[str, tuple[str, ...]]) -> None:
        """Each problem is logged once when it appears, not again on every listing that still has it."""
        for connector, found in problems.items():
            for problem in found:
                if problem not in self._problems.get(connector, ()):
                    logger.error("connector problem", extra={"connector": connector, "problem": problem})

    # -- lookups -----------------------------------------------------------------------------

    def tools(self) -> Iterable[ToolEntry]:
        """The tools agents are offered and may call."""
        return self._tools.values()

    def policy_tools(self) -> Iterable[ToolEntry]:
        """The served tools and the ones withheld for a connector file problem.

        Access policies are validated against these, so a typo in one connector file withholds
        that connector's tools without making every policy that names them fail to load.
        """
        return self._policy_tools

    def problems(self) -> Mapping[str, tuple[str, ...]]:
        """Per connector, what is wrong with its file or its names, as a person fixing it should read it."""
        return self._problems

    def prompts(self) -> Iterable[PromptEntry]:
        return self._prompts.values()

    def resources(self) -> list[ResourceEntry]:
        """Every backend's resources, in connector order; two backends' identical URIs are two entries."""
        return [entry for view in self._views.values() for entry in view.resources]

    def resource_templates(self) -> list[ResourceEntry]:
        """Every backend's URI templates, in connector order, exposed like resource URIs."""
        return [entry for view in self._views.values() for entry in view.templates]

    def pending_tools(self) -> Iterable[tuple[ToolEntry, Verdict]]:
        """The tools withheld until an admin accepts their definition, with why (quarantined or held)."""
        return self._pending.values()

    def resolve_tool(self, exposed: str) -> ToolEntry:
        try:
            return self._tools[exposed]
        except KeyError:
            pending = self._pending.get(exposed)
            if pending is not None:
                raise ToolUnderReview(_under_review(pending[0], pending[1]), tool=pending[0]) from None
            raise UnknownTool(f"unknown tool '{exposed}': list the tools to see the available names") from None

    def resolve_prompt(self, exposed: str) -> PromptEntry:
        try:
            return self._prompts[exposed]
        except KeyError:
            raise UnknownPrompt(f"unknown prompt '{exposed}': list the prompts to see the available names") from None

    def resolve_resource(self, exposed: str) -> ResourceRoute:
        """The backend an exposed URI names, listed or not: a URI a tool result links to is readable too.

        Whether the backend has such a resource is the backend's to answer; whether the agent may
        read it is the access policies'.
        """
        split = split_uri(exposed)
        if split is None:
            listed = [
                entry.exposed for view in self._views.values() for entry in view.resources if entry.original == exposed
            ]
            hint = f" (did you mean '{listed[0]}'?)" if len(listed) == 1 else ""
            raise UnknownResource(
                f"unknown resource '{exposed}': the gateway serves each backend's resources as "
                f"gateway://<connector>/<the backend's URI>{hint}; list resources and templates to see what exists"
            )
        connector, uri = split
        if connector not in self._settings:
            raise UnknownResource(
                f"unknown resource '{exposed}': there is no backend named '{connector}'; "
                "list resources and templates to see what exists"
            )
        return ResourceRoute(connector, uri, exposed)


def _under_review(entry: ToolEntry, verdict: Verdict) -> str:
    """What an agent calling a withheld tool is told: which tool, why, and who can release it."""
    if verdict is Verdict.QUARANTINED:
        why = (
            f"tool '{entry.exposed}' is quarantined: its definition (description, schemas or annotations) "
            f"changed at backend '{entry.connector}' since an admin accepted it"
        )
    else:
        why = f"tool '{entry.exposed}' is new at backend '{entry.connector}' and has not been accepted yet"
    return (
        f"{why}; it cannot be called until an admin reviews it "
        f"(`gateway tools diff {entry.exposed}`, then `gateway tools accept {entry.exposed}`, "
        "or the console's connectors page); ask your user to have it reviewed"
    )


def _can_add_parameter(schema: Any, parameter: str) -> bool:
    if schema is None:
        return True
    if not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
        return False
    return parameter not in (schema.get("properties") or {})


def _with_reasoning(schema: Any, parameter: str, description: str, mode: str) -> JsonObject:
    """The tool's input schema with the reasoning parameter added (required in `required` mode)."""
    base: JsonObject = dict(schema) if isinstance(schema, Mapping) else {"type": "object"}
    base.setdefault("type", "object")
    base["properties"] = {**(base.get("properties") or {}), parameter: {"type": "string", "description": description}}
    if mode == "required":
        base["required"] = [*(base.get("required") or []), parameter]
    return base
