"""A small, real world for policy tests: catalogs built the way backends fill them, policy files on disk."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.catalog import Catalog
from gateway.connectors.base import Listing
from gateway.identity.principal import Principal
from gateway.policy import Decision, PolicyEngine
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


def write_policy(policy_dir: Path, name: str, text: str) -> Path:
    """Write `<policy_dir>/access/<name>` so that a poll for changes always notices it.

    The modification time is set one second past the previous one: two writes within one tick
    of the file system clock would otherwise look the same when the size does not change.
    """
    access = policy_dir / "access"
    access.mkdir(parents=True, exist_ok=True)
    path = access / name
    previous = path.stat().st_mtime_ns if path.exists() else None
    path.write_text(text, encoding="utf-8")
    if previous is not None:
        bumped = max(path.stat().st_mtime_ns, previous + 1_000_000_000)
        os.utime(path, ns=(bumped, bumped))
    return path


@dataclass
class Loaded:
    """An engine loaded from files against a catalog, with a shortcut to decide calls by exposed name."""

    engine: PolicyEngine
    catalog: Catalog

    def call(self, principal: Principal, exposed: str, arguments: Any = None, **context: Any) -> Decision:
        tool = self.catalog.resolve_tool(exposed)
        return self.engine.decide_call(principal, tool, {} if arguments is None else arguments, **context)


def load(policy_dir: Path, policies: str, catalog: Catalog | None = None, *, name: str = "main.cedar") -> Loaded:
    """Write `policies` to `<policy_dir>/access/<name>` and load them against `catalog` (standard tools by default)."""
    catalog = catalog or make_catalog()
    write_policy(policy_dir, name, policies)
    engine = PolicyEngine(policy_dir)
    engine.load(catalog)
    return Loaded(engine, catalog)
