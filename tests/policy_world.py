"""A small, real world for policy tests: catalogs built the way backends fill them, policy files on disk."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.calls import Call, Origin, Target
from gateway.catalog import Catalog, PromptEntry, ToolEntry
from gateway.connectors.base import Listing
from gateway.identity.principal import Principal
from gateway.policy import Decision, PolicyDecisions, PolicyEngine, PolicyStore
from gateway.settings.connectors import McpStdioConnector, ToolOverride

SALES = Principal(agent="sales-bot", roles=("sales",))
FINANCE = Principal(agent="finance-bot", roles=("finance",))
STRANGER = Principal(agent="stranger", roles=())

READ_ONLY = {"readOnlyHint": True, "openWorldHint": False}
DESTRUCTIVE = {"readOnlyHint": False, "destructiveHint": True, "openWorldHint": False}


def tool(
    name: str,
    properties: Mapping[str, Any] | None = None,
    *,
    required: Iterable[str] = (),
    annotations: Mapping[str, Any] | None = None,
    input_schema: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A tool as a backend lists it (MCP wire format)."""
    schema = (
        dict(input_schema) if input_schema is not None else {"type": "object", "properties": dict(properties or {})}
    )
    if required:
        schema["required"] = list(required)
    definition: dict[str, Any] = {"name": name, "description": f"The {name} tool.", "inputSchema": schema}
    if annotations is not None:
        definition["annotations"] = dict(annotations)
    return definition


def standard_tools() -> dict[str, list[dict[str, Any]]]:
    return {
        "crm": [
            tool(
                "search_customers",
                {"query": {"type": "string"}, "limit": {"type": "integer"}},
                required=["query"],
                annotations=READ_ONLY,
            ),
            tool(
                "update_record",
                {"customer_id": {"type": "string"}, "field": {"type": "string"}, "value": {"type": "string"}},
                required=["customer_id", "field", "value"],
                annotations=DESTRUCTIVE,
            ),
        ],
        "finance": [
            tool(
                "list_invoices",
                {"status": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}},
                annotations=READ_ONLY,
            ),
            tool(
                "pay_invoice",
                {"invoice_id": {"type": "string"}, "amount": {"type": "number", "exclusiveMinimum": 0}},
                required=["invoice_id", "amount"],
                annotations={**DESTRUCTIVE, "openWorldHint": True},
            ),
        ],
    }


def make_catalog(
    tools: Mapping[str, list[dict[str, Any]]] | None = None,
    *,
    connectors: Iterable[str] | None = None,
    labels: Mapping[str, tuple[str, ...]] | None = None,
    tool_labels: Mapping[str, Mapping[str, tuple[str, ...]]] | None = None,
    prompts: Mapping[str, list[dict[str, Any]]] | None = None,
    resources: Mapping[str, list[dict[str, Any]]] | None = None,
) -> Catalog:
    """A catalog with `connectors` configured and `tools` (per connector) listed."""
    tools = standard_tools() if tools is None else tools
    names = list(connectors) if connectors is not None else list(tools)
    settings = [
        McpStdioConnector(
            name=name,
            kind="mcp-stdio",
            command=("backend",),
            labels=(labels or {}).get(name, ()),
            tools={t: ToolOverride(labels=ls) for t, ls in (tool_labels or {}).get(name, {}).items()},
        )
        for name in names
    ]
    catalog = Catalog(settings)
    for name in names:
        if name in tools or (prompts and name in prompts) or (resources and name in resources):
            catalog.update(
                name,
                Listing(
                    tools=tuple(tools.get(name, ())),
                    prompts=tuple((prompts or {}).get(name, ())),
                    resources=tuple((resources or {}).get(name, ())),
                ),
            )
    return catalog


def write_policy(policy_dir: Path, name: str, text: str, *, folder: str = "access") -> Path:
    """Write `<policy_dir>/<folder>/<name>` so that a poll for changes always notices it.

    The modification time is set one second past the previous one: two writes within one tick
    of the file system clock would otherwise look the same when the size does not change.
    """
    directory = policy_dir / folder
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    previous = path.stat().st_mtime_ns if path.exists() else None
    path.write_text(text, encoding="utf-8")
    if previous is not None:
        bumped = max(path.stat().st_mtime_ns, previous + 1_000_000_000)
        os.utime(path, ns=(bumped, bumped))
    return path


def tool_call(
    principal: Principal,
    tool: ToolEntry,
    arguments: Any = None,
    *,
    reasoning: str | None = None,
    workflow: str | None = None,
    session_id: str | None = None,
    client: str | None = None,
    request_id: str | int | None = None,
) -> Call:
    """The resolved `tools/call` of `tool` a front would hand the engine."""
    origin = Origin(principal, request_id=request_id, session_id=session_id, client_name=client)
    return Call(
        "tools/call",
        origin,
        tool.exposed,
        {} if arguments is None else arguments,
        reasoning=reasoning,
        workflow=workflow,
        target=Target(tool.connector, tool.original),
    )


def resource_read(principal: Principal, connector: str, uri: str) -> Call:
    """The resolved `resources/read` of the resource the backend `connector` knows as `uri`."""
    return Call("resources/read", Origin(principal), target=Target(connector, uri))


def prompt_get(principal: Principal, prompt: PromptEntry) -> Call:
    """The resolved `prompts/get` of `prompt`."""
    return Call("prompts/get", Origin(principal), prompt.exposed, target=Target(prompt.connector, prompt.original))


@dataclass
class Loaded:
    """An engine loaded from files against a catalog, with shortcuts to decide requests by exposed name."""

    engine: PolicyEngine
    catalog: Catalog

    @property
    def store(self) -> PolicyStore:
        return self.engine.store

    @property
    def decisions(self) -> PolicyDecisions:
        return self.engine.decisions

    def call(
        self, principal: Principal, exposed: str, arguments: Any = None, *, now: datetime | None = None, **origin: Any
    ) -> Decision:
        """`origin` takes `tool_call`'s keywords: reasoning, workflow, session_id, client, request_id."""
        tool = self.catalog.resolve_tool(exposed)
        return self.decisions.decide_call(tool_call(principal, tool, arguments, **origin), tool, now=now)

    def read(self, principal: Principal, connector: str, uri: str) -> Decision:
        return self.decisions.decide_read_resource(resource_read(principal, connector, uri))

    def prompt(self, principal: Principal, exposed: str) -> Decision:
        prompt = self.catalog.resolve_prompt(exposed)
        return self.decisions.decide_get_prompt(prompt_get(principal, prompt), prompt)


def load(policy_dir: Path, policies: str, catalog: Catalog | None = None, *, name: str = "main.cedar") -> Loaded:
    """Write `policies` to `<policy_dir>/access/<name>` and load them against `catalog` (standard tools by default)."""
    catalog = catalog or make_catalog()
    write_policy(policy_dir, name, policies)
    engine = PolicyEngine(policy_dir)
    engine.store.load(catalog)
    return Loaded(engine, catalog)
