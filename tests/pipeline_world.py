"""A pipeline on an in-memory backend, real Cedar policies and a real SQLite audit log, for fast tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio

from fake_connector import FakeConnector, tool
from gateway.approvals import ApprovalStore, Sealer
from gateway.audit import AuditCall, AuditRecorder, Redactor, search
from gateway.calls import Call, Origin
from gateway.catalog import Catalog
from gateway.holding import HoldStage
from gateway.identity.principal import Principal
from gateway.pipeline import Pipeline
from gateway.policy import PolicyEngine
from gateway.settings.approvals import ApprovalSettings
from gateway.settings.connectors import McpStdioConnector, ToolOverride
from gateway.settings.telemetry import TelemetrySettings
from gateway.storage import Database
from gateway.telemetry import Telemetry
from policy_world import write_policy

SALES = Principal(agent="sales-bot", roles=("sales",))
INTERN = Principal(agent="intern-bot", roles=("intern",))

POLICIES = """
@id("list") permit (principal is Agent, action == Action::"list_tools", resource is Server);

@id("sales-search")
@reason("sales agents may search customers")
permit (principal in Role::"sales", action == Action::"crm__search", resource);

@id("sales-delete-small")
@reason("sales agents may delete test records only")
permit (principal in Role::"sales", action == Action::"crm__delete", resource)
when { context.input.id like "test-*" };

@id("sales-prompts")
permit (principal in Role::"sales", action == Action::"get_prompt", resource in Server::"crm");

@id("sales-read")
permit (principal in Role::"sales", action == Action::"read_resource", resource in Server::"crm");

@id("interns-search")
permit (principal in Role::"intern", action == Action::"crm__search", resource);
"""


@dataclass
class World:
    pipeline: Pipeline
    crm: FakeConnector
    database: Database
    recorder: AuditRecorder
    #: The held calls' store, when the world was given approval settings with a sealing key.
    approvals: ApprovalStore | None = None

    def call(self, principal: Principal, name: str, arguments: Any = None, meta: dict[str, Any] | None = None) -> Call:
        return Call.of("tools/call", Origin(principal, request_id=1, session_id="s-1"), name, arguments, meta)

    async def entries(self, count: int) -> list[AuditCall]:
        """The newest `count` audit entries, oldest first, once each has its outcome."""
        with anyio.fail_after(10):
            while True:
                page = await search(self.database, limit=count)
                if len(page.calls) == count and all(c.outcome is not None for c in page.calls):
                    return list(reversed(page.calls))
                await anyio.sleep(0.01)


@asynccontextmanager
async def pipeline_world(
    tmp_path: Path,
    policies: str | None = POLICIES,
    *,
    approval_policies: str | None = None,
    approvals: ApprovalSettings | None = None,
) -> AsyncIterator[World]:
    """A `crm` backend with three tools, two prompts and a resource, behind `policies`.

    `policies=None` is a gateway whose policies never loaded: nothing can be decided.
    `approval_policies` go to `approval/`; `approvals` with a sealing key gives held calls a store.
    """
    crm = FakeConnector(
        "crm",
        tools=[
            tool("search", inputSchema={"type": "object", "properties": {"q": {"type": "string"}}}),
            tool(
                "delete", inputSchema={"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
            ),
            tool("export"),
        ],
        prompts=[{"name": "summary"}, {"name": "secret"}],
        resources=[{"uri": "crm://accounts", "name": "accounts"}],
    )
    settings = McpStdioConnector(
        name="crm", kind="mcp-stdio", command=("crm",), tools={"search": ToolOverride(reasoning="required")}
    )
    catalog = Catalog([settings])
    catalog.update("crm", crm.listing)
    policy_dir = tmp_path / "policies"
    policy = PolicyEngine(policy_dir)
    if approval_policies is not None:
        (policy_dir / "approval").mkdir(parents=True, exist_ok=True)
        (policy_dir / "approval" / "holds.cedar").write_text(approval_policies, encoding="utf-8")
    if policies is not None:
        write_policy(policy_dir, "access.cedar", policies)
        policy.store.load(catalog)
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    await database.migrate()
    telemetry = Telemetry(TelemetrySettings(metrics_enabled=False))
    settings = approvals or ApprovalSettings()
    async with AuditRecorder(database, Redactor(), replica_id="gw-test") as recorder:
        store = None
        if settings.sealing_keys:
            keys = [(key.id, key.key.get_secret_value()) for key in settings.sealing_keys]
            store = ApprovalStore(
                database,
                Sealer(keys),
                recorder=recorder,
                max_result_bytes=settings.max_result_bytes,
                collect_within=timedelta(seconds=settings.collect_within),
            )
        holds = HoldStage(store, policy.decisions, Redactor(), settings, executor="gw-test")
        pipeline = Pipeline(catalog, {"crm": crm}, policy, recorder, telemetry, holds=holds)
        yield World(pipeline, crm, database, recorder, store)
    await database.close()
