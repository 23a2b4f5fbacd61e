"""A backend that has never listed (down at first start, fresh database) must not deny everyone
everything: the policies that can only concern it wait, the rest load and are enforced, and no
forbid is left out in a way that could allow what it forbids. First with the real engine and
real policy files, then end to end: a gateway whose second backend comes up while it runs."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from gateway.calls import Origin
from gateway.catalog import Catalog
from gateway.connectors.base import Listing
from gateway.errors import PolicyLoadError, UnknownTool
from gateway.identity.principal import Principal
from gateway.policy import Decision, PolicyEngine
from harness import (
    GatewayProcess,
    eventually,
    free_port,
    http_connector,
    mcp_client,
    start_http_backend,
    stdio_connector,
    wait_until,
    write_gateway_config,
)
from policy_world import FINANCE, SALES, make_catalog, resource_read, standard_tools, tool_call, write_policy

UNKNOWN_TOOL = -32602
POLICY_DENIED = -32003
GATEWAY_NOT_READY = -32004
PAY = {"invoice_id": "INV-1", "amount": 120.5}
SEARCH = {"query": "acme"}
UPDATE = {"customer_id": "C-1", "field": "status", "value": "active"}

CRM_FOR_SALES = """
@id("sales-crm")
permit (principal in Role::"sales", action in Action::"server:crm", resource);
"""
FINANCE_PAYS = """
@id("finance-pays")
permit (principal in Role::"finance", action == Action::"finance__pay_invoice", resource);
"""
NO_LARGE_PAYMENTS = """
@id("no-large-payments")
@reason("Payments over 100 need approval.")
forbid (principal, action == Action::"finance__pay_invoice", resource)
when { context.input.amount.greaterThan(decimal("100.0")) };
"""


def finance_down() -> Catalog:
    """crm has listed; finance is configured (labelled `money`) but has never listed."""
    return make_catalog({"crm": standard_tools()["crm"]}, connectors=["crm", "finance"], labels={"finance": ("money",)})


def list_finance(catalog: Catalog) -> None:
    catalog.update("finance", Listing(tools=tuple(standard_tools()["finance"])))


def loaded_engine(policy_dir: Path, text: str, catalog: Catalog) -> PolicyEngine:
    write_policy(policy_dir, "main.cedar", text)
    engine = PolicyEngine(policy_dir)
    engine.store.load(catalog)
    return engine


def decide(
    engine: PolicyEngine, catalog: Catalog, principal: Principal, tool: str, arguments: dict[str, object]
) -> Decision:
    entry = catalog.resolve_tool(tool)
    return engine.decisions.decide_call(tool_call(principal, entry, arguments), entry)


def call(engine: PolicyEngine, catalog: Catalog, principal: Principal, tool: str, arguments: dict[str, object]) -> bool:
    return decide(engine, catalog, principal, tool, arguments).allowed


# -- the rule, with the real engine ------------------------------------------------------------


def test_a_permit_for_an_unlisted_connector_waits_and_the_rest_is_enforced(tmp_path: Path) -> None:
    catalog = finance_down()
    engine = loaded_engine(tmp_path, CRM_FOR_SALES + FINANCE_PAYS, catalog)

    status = engine.store.status
    assert status.loaded and status.policy_count == 1 and status.last_error is None
    assert len(status.waiting) == 1
    assert "main.cedar:5: policy 'finance-pays' (permit) waits for connector 'finance'" in status.waiting[0]
    assert 'Action::"finance__pay_invoice"' in status.waiting[0]
    assert call(engine, catalog, SALES, "crm__search_customers", SEARCH)
    assert not call(engine, catalog, FINANCE, "crm__search_customers", SEARCH)


def test_waiting_policies_load_and_are_enforced_once_the_connector_lists(tmp_path: Path) -> None:
    catalog = finance_down()
    engine = loaded_engine(tmp_path, CRM_FOR_SALES + FINANCE_PAYS + NO_LARGE_PAYMENTS, catalog)
    assert {line.split("'")[1] for line in engine.store.status.waiting} == {"finance-pays", "no-large-payments"}

    list_finance(catalog)
    # Until the policies are re-validated, the newly listed tool is denied, never decided by a partial set.
    assert not call(engine, catalog, FINANCE, "finance__pay_invoice", {**PAY, "amount": 10.0})
    engine.store.catalog_changed(catalog)

    assert engine.store.status.waiting == () and engine.store.status.policy_count == 3
    assert call(engine, catalog, FINANCE, "finance__pay_invoice", {**PAY, "amount": 10.0})
    large = decide(engine, catalog, FINANCE, "finance__pay_invoice", {**PAY, "amount": 500.0})
    assert not large.allowed and large.policy_ids == ("no-large-payments",)


@pytest.mark.parametrize(
    "forbid",
    [
        'forbid (principal, action == Action::"finance__pay_invoice", resource) when { context.input.amount > 1 };',
        'forbid (principal, action in [Action::"finance__pay_invoice", Action::"finance__list_invoices"], resource);',
        'forbid (principal, action in Action::"server:finance", resource);',
        'forbid (principal, action in Action::"label:money", resource);',
        'forbid (principal, action, resource in Server::"finance") when { action == Action::"finance__x" };',
        'forbid (principal, action, resource == Tool::"finance__pay_invoice") when { action == Action::"finance__x" };',
    ],
)
def test_a_forbid_confined_to_the_unlisted_connector_waits_and_opens_nothing(tmp_path: Path, forbid: str) -> None:
    catalog = finance_down()
    everything = '@id("everything")\npermit (principal, action, resource);\n'
    engine = loaded_engine(tmp_path, everything + forbid + "\n", catalog)

    assert engine.store.status.policy_count == 1 and len(engine.store.status.waiting) == 1
    assert "(forbid) waits for connector 'finance'" in engine.store.status.waiting[0]
    # What it forbids is not in the catalog: refused as unknown by the gateway, and denied by the engine.
    with pytest.raises(UnknownTool):
        catalog.resolve_tool("finance__pay_invoice")
    list_finance(catalog)
    assert not call(engine, catalog, FINANCE, "finance__pay_invoice", PAY)


def test_resources_of_a_connector_that_lists_after_the_load_wait_for_the_next_load(tmp_path: Path) -> None:
    catalog = finance_down()
    engine = loaded_engine(
        tmp_path,
        '@id("everything")\npermit (principal, action, resource);\n'
        '@id("no-finance-reads")\nforbid (principal, action, resource in Server::"finance")\n'
        'when { action == Action::"finance__pay_invoice" || action == Action::"read_resource" };\n',
        catalog,
    )
    assert "policy 'no-finance-reads' (forbid) waits for connector 'finance'" in engine.store.status.waiting[0]
    invoice = {"uri": "finance://invoices/INV-1", "name": "INV-1"}
    catalog.update("finance", Listing(tools=tuple(standard_tools()["finance"]), resources=(invoice,)))

    # Listed, but not re-validated yet: the waiting forbid is not in force, so nothing of finance is allowed.
    assert not engine.decisions.decide_read_resource(resource_read(FINANCE, "finance", invoice["uri"])).allowed
    assert engine.decisions.visible_resources(Origin(FINANCE), catalog.resources()) == []
    engine.store.catalog_changed(catalog)
    assert engine.store.status.waiting == ()
    denied = engine.decisions.decide_read_resource(resource_read(FINANCE, "finance", invoice["uri"]))
    assert not denied.allowed and denied.policy_ids == ("no-finance-reads",)


@pytest.mark.parametrize(
    "forbid",
    [
        # Part of the action list is a listed tool.
        'forbid (principal, action in [Action::"finance__pay_invoice", Action::"crm__update_record"], resource);',
        # The scope covers listed tools; only the condition names the unlisted connector.
        'forbid (principal, action in Action::"destructive", resource) '
        'unless { action == Action::"finance__list_invoices" };',
        'forbid (principal, action, resource) when { action in Action::"label:money" || principal in Role::"sales" };',
    ],
)
def test_a_forbid_that_also_covers_listed_tools_refuses_the_set_and_opens_nothing(tmp_path: Path, forbid: str) -> None:
    catalog = finance_down()
    write_policy(tmp_path, "main.cedar", '@id("everything")\npermit (principal, action, resource);\n' + forbid + "\n")
    engine = PolicyEngine(tmp_path)

    with pytest.raises(PolicyLoadError) as refused:
        engine.store.load(catalog)

    message = str(refused.value)
    assert "main.cedar:3: policy 'main:2': this forbid names actions of connector 'finance'" in message
    assert "the whole set is refused" in message and 'Action::"server:finance"' in message
    assert not engine.store.status.loaded
    assert not call(engine, catalog, SALES, "crm__update_record", UPDATE)  # fails closed

    list_finance(catalog)
    engine.store.catalog_changed(catalog)
    assert engine.store.status.loaded and engine.store.status.waiting == ()
    assert not call(engine, catalog, SALES, "crm__update_record", UPDATE)  # once checkable, in force


def test_a_failure_no_listing_can_cure_is_still_a_load_error(tmp_path: Path) -> None:
    catalog = finance_down()
    write_policy(
        tmp_path,
        "main.cedar",
        FINANCE_PAYS + 'permit (principal, action == Action::"billing__charge", resource);\n'
        'permit (principal, action == Action::"finance__pay_invoice", resource) when { context.input.x == 1 };\n'
        'permit (principal, action == Action::"crm__search_customers", resource) when { context.input.nope == 1 };\n',
    )

    with pytest.raises(PolicyLoadError) as refused:
        PolicyEngine(tmp_path).store.load(catalog)

    message = str(refused.value)
    assert 'unrecognized action `Action::"billing__charge"`' in message  # no such connector
    assert "input.nope" in message  # a listed tool's argument that does not exist
    assert "finance-pays" not in message and "main:3" not in message  # these wait


def test_with_every_connector_listed_nothing_waits(tmp_path: Path) -> None:
    catalog = make_catalog()
    write_policy(tmp_path, "main.cedar", 'permit (principal, action == Action::"finance__no_such", resource);\n')

    with pytest.raises(PolicyLoadError, match='unrecognized action `Action::"finance__no_such"`'):
        PolicyEngine(tmp_path).store.load(catalog)


# -- end to end: a gateway whose second backend is down at first start -------------------------

GATEWAY_POLICIES = {
    "main.cedar": """
@id("list-tools")
permit (principal, action == Action::"list_tools", resource);

@id("live-tools")
permit (principal, action in Action::"server:live", resource);

@id("late-add")
permit (principal, action == Action::"late__add", resource);

@id("late-echo")
permit (principal, action == Action::"late__echo", resource);

@id("no-secrets-from-late")
@reason("Secrets are not echoed.")
forbid (principal, action == Action::"late__echo", resource)
when { context.input.text == "secret" };
"""
}


#: How long a backend that comes up may take to be reconnected, listed and its policies loaded, on a busy machine.
LISTING_DEADLINE = 90.0


def late_connector(port: int) -> str:
    """A backend that is not there yet; the gateway keeps trying, soon enough for a test."""
    retry = "connect_timeout = 10\n[restart]\ninitial_backoff = 0.1\nmax_backoff = 0.5"
    return http_connector(f"http://127.0.0.1:{port}/mcp", extra=retry)


@pytest.mark.anyio
async def test_a_backend_down_at_first_start_leaves_the_others_usable_until_it_lists(tmp_path: Path) -> None:
    late_port = free_port()
    write_gateway_config(
        tmp_path, {"live": stdio_connector(), "late": late_connector(late_port)}, policies=GATEWAY_POLICIES
    )
    gateway = GatewayProcess(tmp_path, free_port())
    gateway.start()  # ready (degraded), not refused: the policies for the live backend loaded
    late = None
    try:
        ready = gateway.readyz()
        assert ready["status"] == "degraded" and ready["backends"]["late"]["state"] != "healthy"
        policies = ready["checks"]["policies"]
        assert policies["state"] == "loaded" and policies["count"] == 2 and policies["error"] is None
        assert {line.split("'")[1] for line in policies["waiting"]} == {"late-add", "late-echo", "no-secrets-from-late"}
        assert all("waits for connector 'late' to list its tools" in line for line in policies["waiting"])

        validated = await anyio.to_thread.run_sync(lambda: gateway.cli("policy", "validate"))
        assert "2 access policies are valid" in validated.stdout
        assert "3 more policies wait, not loaded, until connectors list:" in validated.stdout
        assert "waiting: " in validated.stdout and "policy 'no-secrets-from-late' (forbid)" in validated.stdout

        key = gateway.create_key("agent", "ops")
        async with mcp_client(gateway.url, key) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "live__echo" in names and not any(name.startswith("late__") for name in names)
            echoed = await client.call_tool("live__echo", {"text": "hello"})
            assert not echoed.is_error
            for arguments in ({"text": "secret"}, {"text": "hello"}):
                with pytest.raises(MCPError) as unknown:
                    await client.call_tool("late__echo", arguments)
                assert unknown.value.error.code == UNKNOWN_TOOL

        late = start_http_backend(port=late_port)
        ready = await eventually(
            lambda: (r := gateway.readyz())["checks"]["policies"]["count"] == 5 and r,
            timeout=LISTING_DEADLINE,
            what="the waiting policies to load once the late backend listed",
        )
        assert ready["checks"]["policies"]["waiting"] == [] and ready["backends"]["late"]["state"] == "healthy"

        async with mcp_client(gateway.url, key) as client:
            added = await client.call_tool("late__add", {"a": 2, "b": 3})
            assert not added.is_error
            echoed = await client.call_tool("late__echo", {"text": "hello"})
            assert not echoed.is_error
            with pytest.raises(MCPError) as denied:
                await client.call_tool("late__echo", {"text": "secret"})
            assert denied.value.error.code == POLICY_DENIED
            assert denied.value.error.message == "denied: Secrets are not echoed."
    finally:
        gateway.stop()
        if late is not None:
            late.stop()


@pytest.mark.anyio
async def test_a_forbid_that_mixes_listed_and_unlisted_tools_is_never_dropped(tmp_path: Path) -> None:
    late_port = free_port()
    policies = {
        "main.cedar": """
@id("everything")
permit (principal, action, resource);

@id("no-large-adds")
@reason("Large sums need a person.")
forbid (principal, action in [Action::"live__add", Action::"late__add"], resource)
when { context.input.a > 100 };
"""
    }
    write_gateway_config(tmp_path, {"live": stdio_connector(), "late": late_connector(late_port)}, policies=policies)
    gateway = GatewayProcess(tmp_path, free_port())
    gateway.start(wait_ready=False)
    late = None
    try:
        ready = wait_until(  # nothing else runs yet: blocking while the gateway starts is fine
            lambda: (r := gateway.readyz()) and r["checks"]["policies"]["error"] and r,
            what="the refused set to be reported",
        )
        error = ready["checks"]["policies"]["error"]
        assert "policy 'no-large-adds': this forbid names actions of connector 'late'" in error
        assert "the whole set is refused" in error
        # Refused once the live backend listed: the set in force is the one loaded at start, before any
        # backend listed (the forbid waiting then, confined to unlisted tools), which never validated
        # the live backend's tools, so they are not served.
        assert ready["checks"]["policies"]["state"] == "loaded"

        key = gateway.create_key("agent", "ops")
        async with mcp_client(gateway.url, key) as client:
            assert not any(tool.name.startswith("live__") for tool in (await client.list_tools()).tools)
            with pytest.raises(MCPError) as refused:
                await client.call_tool("live__add", {"a": 1000, "b": 1})
            assert "live__add" in refused.value.error.message

        late = start_http_backend(port=late_port)
        await eventually(
            lambda: (
                (policies := gateway.readyz()["checks"]["policies"])["state"] == "loaded" and policies["error"] is None
            ),
            timeout=LISTING_DEADLINE,
            what="the set to load once the late backend listed",
        )
        async with mcp_client(gateway.url, key) as client:
            with pytest.raises(MCPError) as denied:
                await client.call_tool("live__add", {"a": 1000, "b": 1})
            assert denied.value.error.code == POLICY_DENIED
            assert denied.value.error.message == "denied: Large sums need a person."
            with pytest.raises(MCPError) as denied_late:
                await client.call_tool("late__add", {"a": 1000, "b": 1})
            assert denied_late.value.error.code == POLICY_DENIED
            assert not (await client.call_tool("live__add", {"a": 1, "b": 1})).is_error
    finally:
        gateway.stop()
        if late is not None:
            late.stop()
