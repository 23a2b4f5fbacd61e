"""Cedar policy on every request, end to end: the quick start's backends and policies, agents of
different roles, live reloads, and a gateway with no valid policy (everything denied)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

from harness import (
    GatewayProcess,
    eventually,
    free_port,
    mcp_client,
    running_gateway,
    stdio_connector,
    wait_until,
    write_gateway_config,
)

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart"
POLICY_DENIED = -32003
GATEWAY_NOT_READY = -32004

#: What the quick start's policies let every agent call: the gateway's own status tool.
EVERY_AGENTS = {"gateway__approval_status", "gateway__workflow_status", "gateway__workflow_note"}

LARGE_PAYMENTS = """
@id("large-payments-need-approval")
@reason("Payments over 10,000 need a person's approval; ask a finance manager.")
forbid (principal, action == Action::"finance__pay_invoice", resource)
when { context.input.amount.greaterThan(decimal("10000.0")) };
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("policy-gateway")
    policies = {p.name: p.read_text() for p in (ROOT / "policies" / "access").glob("*.cedar")}
    policies["large-payments.cedar"] = LARGE_PAYMENTS
    write_gateway_config(
        directory,
        {
            "crm": stdio_connector(script=QUICKSTART / "crm_server.py", extra='labels = ["customer-data"]'),
            "finance": stdio_connector(script=QUICKSTART / "finance_server.py", extra='labels = ["money"]'),
        },
        policies=policies,
        extra="reload_interval = 0.2\n",
    )
    process = GatewayProcess(directory, free_port())
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def keys(gateway: GatewayProcess) -> dict[str, str]:
    return {
        "sales": gateway.create_key("sales-bot", "sales"),
        "finance": gateway.create_key("finance-bot", "finance"),
        "nobody": gateway.create_key("intern-bot"),
    }


async def tool_names(gateway: GatewayProcess, key: str) -> set[str]:
    async with mcp_client(gateway.url, key) as client:
        return {tool.name for tool in (await client.list_tools()).tools}


@pytest.mark.anyio
async def test_agents_see_only_the_tools_they_may_call(gateway: GatewayProcess, keys: dict[str, str]) -> None:
    assert await tool_names(gateway, keys["sales"]) == {
        "crm__search_customers",
        "crm__get_customer",
        "crm__update_record",
        *EVERY_AGENTS,
    }
    assert await tool_names(gateway, keys["finance"]) == {
        "finance__list_invoices",
        "finance__pay_invoice",
        *EVERY_AGENTS,
    }
    assert await tool_names(gateway, keys["nobody"]) == EVERY_AGENTS


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_allowed_calls_run_and_hidden_tools_answer_as_unknown(
    gateway: GatewayProcess, keys: dict[str, str], mode: str
) -> None:
    async with mcp_client(gateway.url, keys["sales"], mode=mode) as client:
        found = await client.call_tool("crm__search_customers", {"query": "acme"})
        assert not found.is_error
        with pytest.raises(MCPError) as hidden:
            await client.call_tool("finance__pay_invoice", {"invoice_id": "INV-2001", "amount": 1.0})
        assert "unknown tool 'finance__pay_invoice'" in hidden.value.error.message


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_denied_call_carries_the_policy_reason_not_its_text(
    gateway: GatewayProcess, keys: dict[str, str], mode: str
) -> None:
    async with mcp_client(gateway.url, keys["finance"], mode=mode) as client:
        with pytest.raises(MCPError) as denied:
            await client.call_tool("finance__pay_invoice", {"invoice_id": "INV-2003", "amount": 48000.0})
        error = denied.value.error
        assert error.code == POLICY_DENIED
        assert "Payments over 10,000 need a person's approval" in error.message
        assert "forbid" not in error.message and "context.input" not in error.message
        assert "large-payments-need-approval" not in error.message
        # The same tool with a small amount is allowed: the decision depends on the arguments.
        paid = await client.call_tool("finance__pay_invoice", {"invoice_id": "INV-2006", "amount": 980.0})
        assert not paid.is_error or "already paid" in paid.content[0].text  # type: ignore[union-attr]
    log = gateway.log_text()
    assert "large-payments-need-approval" in log  # operators see which policy decided


@pytest.mark.anyio
async def test_resources_and_prompts_follow_the_policies(gateway: GatewayProcess, keys: dict[str, str]) -> None:
    async with mcp_client(gateway.url, keys["sales"]) as client:
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert "gateway://crm/crm://customers/{customer_id}" in templates
        assert not any(t.startswith("gateway://finance/") for t in templates)
        customer = await client.read_resource("gateway://crm/crm://customers/C-1001")
        assert "C-1001" in customer.contents[0].text  # type: ignore[union-attr]
        with pytest.raises(MCPError) as denied:
            await client.read_resource("gateway://finance/finance://invoices/INV-2001")
        assert denied.value.error.code == POLICY_DENIED
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert "crm__account_summary" in prompts and "finance__overdue_reminder" not in prompts


@pytest.mark.anyio
async def test_policies_reload_on_change_and_a_bad_reload_keeps_the_old_set(
    gateway: GatewayProcess, keys: dict[str, str]
) -> None:
    access = gateway.directory / "policies" / "access"
    loaded = gateway.readyz()["checks"]["policies"]["count"]
    extra = access / "interns.cedar"
    extra.write_text(
        '@id("interns-search")\npermit (principal == Agent::"intern-bot", '
        'action == Action::"crm__search_customers", resource);\n'
    )
    await eventually(lambda: gateway.readyz()["checks"]["policies"]["count"] == loaded + 1, what="reload")
    assert await tool_names(gateway, keys["nobody"]) == {"crm__search_customers", *EVERY_AGENTS}

    extra.write_text('permit (principal, action == Action::"crm__no_such_tool", resource);\n')
    ready = await eventually(
        lambda: (r := gateway.readyz())["checks"]["policies"]["error"] and r, what="the bad reload to be reported"
    )
    assert "interns.cedar:1" in ready["checks"]["policies"]["error"]
    assert ready["status"] in ("ready", "degraded")
    # The previous set still runs.
    assert await tool_names(gateway, keys["nobody"]) == {"crm__search_customers", *EVERY_AGENTS}

    extra.unlink()
    await eventually(lambda: gateway.readyz()["checks"]["policies"]["error"] is None, what="recovery")
    assert await tool_names(gateway, keys["nobody"]) == EVERY_AGENTS


def test_without_valid_policies_agents_are_told_the_gateway_is_not_ready(tmp_path: Path) -> None:
    write_gateway_config(
        tmp_path,
        {"crm": stdio_connector(script=QUICKSTART / "crm_server.py")},
        policies={"broken.cedar": "permit (principal, action, resource"},
    )
    gateway = GatewayProcess(tmp_path, free_port())
    gateway.start(wait_ready=False)
    try:
        ready = wait_until(
            lambda: (r := gateway.readyz()) and r["backends"].get("crm", {}).get("state") == "healthy" and r,
            what="the gateway to answer /readyz",
        )
        assert ready["status"] == "not ready"
        assert "broken.cedar:1" in ready["checks"]["policies"]["error"]
        # The load error is logged once, by the part that loaded the policies.
        assert gateway.log_text().count("broken.cedar:1: syntax error") == 1
        key = gateway.create_key("anyone", "sales")
        import anyio

        async def refusals() -> list[MCPError]:
            requests = (
                lambda client: client.list_tools(),
                lambda client: client.call_tool("crm__search_customers", {"query": "acme"}),
                lambda client: client.list_resources(),
                lambda client: client.list_resource_templates(),
                lambda client: client.read_resource("crm://customers/C-1001"),
                lambda client: client.list_prompts(),
                lambda client: client.get_prompt("crm__account_summary", {"customer_id": "C-1001"}),
            )
            errors = []
            async with mcp_client(gateway.url, key) as client:
                for request in requests:
                    with pytest.raises(MCPError) as refused:
                        await request(client)
                    errors.append(refused.value)
            return errors

        for error in anyio.run(refusals):
            assert error.error.code == GATEWAY_NOT_READY
            assert "the gateway is not ready: no valid access policies are loaded" in error.error.message
            assert "/readyz" in error.error.message
    finally:
        gateway.stop()


def test_policy_validate_prints_one_line_per_error_and_exits_1(tmp_path: Path) -> None:
    write_gateway_config(
        tmp_path,
        {"crm": stdio_connector(script=QUICKSTART / "crm_server.py")},
        policies={
            "a.cedar": 'permit (principal, action == Action::"crm__search_customers", resource);\n'
            'permit (principal, action == Action::"crm__no_such_tool", resource);\n',
        },
    )
    gateway = GatewayProcess(tmp_path, free_port())
    invalid = gateway.cli("policy", "validate", check=False)
    assert invalid.returncode == 1
    assert "Traceback" not in invalid.stderr and "ExceptionGroup" not in invalid.stderr
    problems = [line for line in invalid.stderr.splitlines() if "a.cedar:" in line]
    assert problems and all(line.startswith(f"{tmp_path / 'policies' / 'access' / 'a.cedar'}:2: ") for line in problems)
    assert 'unrecognized action `Action::"crm__no_such_tool"`' in problems[0]
    assert invalid.stderr.count('`Action::"crm__no_such_tool"`') == 1  # printed, not also logged
    assert "problem" in invalid.stderr.splitlines()[-1] and "fix them" in invalid.stderr.splitlines()[-1]

    (tmp_path / "policies" / "access" / "a.cedar").write_text("permit (principal, action, resource\n")
    syntax = gateway.cli("policy", "validate", check=False)
    assert syntax.returncode == 1
    assert "Traceback" not in syntax.stderr
    assert f"{tmp_path / 'policies' / 'access' / 'a.cedar'}:1: syntax error:" in syntax.stderr


def test_shipped_policies_pass_their_cases() -> None:
    from harness import run_cli

    result = run_cli("policy", "test", "--dir", str(ROOT / "policies"))
    assert result.returncode == 0
    assert "0 failed" in result.stdout


def test_policy_test_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    from harness import run_cli

    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    cases = tmp_path / "policies" / "tests" / "quickstart.toml"
    cases.write_text(cases.read_text().replace('expect = "deny"', 'expect = "allow"', 1))
    result = run_cli("policy", "test", "--dir", str(tmp_path / "policies"), check=False)
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "1 failed" in result.stdout


#: Only unconditional policies: every decision is settled by the scopes, without Cedar evaluating a condition.
UNCONDITIONAL = """
@id("agents-list-tools")
permit (principal is Agent, action == Action::"list_tools", resource);

@id("qa-uses-the-sink")
permit (principal in Role::"qa", action in Action::"server:sink", resource);

@id("qa-bot-echoes")
@reason("The QA bot may echo.")
permit (principal == Agent::"qa-bot", action == Action::"sink__echo", resource);

@id("suspended-add-nothing")
@reason("Suspended agents may not add.")
forbid (principal in Role::"suspended", action == Action::"sink__add", resource);
"""


@pytest.mark.anyio
async def test_unconditional_policies_decide_and_the_audit_names_them(tmp_path: Path) -> None:
    with running_gateway(tmp_path, {"sink": stdio_connector()}, policies={"scoped.cedar": UNCONDITIONAL}) as gateway:
        qa, suspended = gateway.create_key("qa-bot", "qa"), gateway.create_key("held-bot", "qa", "suspended")
        async with mcp_client(gateway.url, qa) as client:
            echoed = await client.call_tool("sink__echo", {"text": "hello"})
            added = await client.call_tool("sink__add", {"a": 2, "b": 3})
        async with mcp_client(gateway.url, suspended) as client:
            assert "sink__add" not in {tool.name for tool in (await client.list_tools()).tools}
            still_echoes = await client.call_tool("sink__echo", {"text": "hi"})
            with pytest.raises(MCPError) as refused:
                await client.call_tool("sink__add", {"a": 2, "b": 3})
        assert not echoed.is_error and not added.is_error and not still_echoes.is_error
        # A forbid the scopes settle wins over the role's permit; never callable, so the tool is unknown to the agent.
        assert "unknown tool 'sink__add'" in refused.value.error.message
        output = gateway.cli("audit", "search", "--json", "--limit", "50", "--tool", "sink__echo").stdout
        output += gateway.cli("audit", "search", "--json", "--limit", "50", "--tool", "sink__add").stdout
        entries = [json.loads(line) for line in output.splitlines() if line.strip()]
    recorded = {(e["agent"], e["name"]): (e["decision"], e["policy_ids"], e["reason"]) for e in entries}
    assert recorded == {
        # Every permit that applies, in file order; the reason is the first @reason among them.
        ("qa-bot", "sink__echo"): ("allow", ["qa-uses-the-sink", "qa-bot-echoes"], "The QA bot may echo."),
        ("qa-bot", "sink__add"): ("allow", ["qa-uses-the-sink"], "allowed by policy 'qa-uses-the-sink'"),
        ("held-bot", "sink__echo"): ("allow", ["qa-uses-the-sink"], "allowed by policy 'qa-uses-the-sink'"),
        ("held-bot", "sink__add"): ("deny", ["suspended-add-nothing"], "Suspended agents may not add."),
    }
