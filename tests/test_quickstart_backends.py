"""The quick start's demo backends and scripted agent, exercised the way a newcomer runs them.

Each server is started as a real subprocess (stdio, or HTTP on a free port) so the tests cover the
command lines the quick start documents, not just the Python functions behind the tools.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.types import TextContent, TextResourceContents
from mcp.types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
CRM = QUICKSTART / "crm_server.py"
FINANCE = QUICKSTART / "finance_server.py"
AGENT = QUICKSTART / "agent.py"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def over_stdio(script: Path) -> Client:
    """A client that launches a fresh server process, so every test starts from the seeded data."""
    return Client(StdioServerParameters(command=sys.executable, args=[str(script)]))


def error_text(result) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def crm_http_url(tmp_path_factory) -> Iterator[str]:
    """Run `crm_server.py --http PORT` and yield its endpoint once the port accepts connections."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("crm-http") / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, str(CRM), "--http", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"crm_server.py --http exited early:\n{log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"crm_server.py --http never listened on {port}:\n{log_path.read_text()}")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.anyio
async def test_crm_lists_its_tools_with_annotations():
    async with over_stdio(CRM) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) == {"search_customers", "get_customer", "update_record"}
    assert set(tools["search_customers"].input_schema["properties"]) == {"query", "limit"}
    assert set(tools["update_record"].input_schema["properties"]) == {"customer_id", "field", "value"}
    for name in ("search_customers", "get_customer"):
        assert tools[name].annotations.read_only_hint is True
        assert tools[name].description
    update = tools["update_record"].annotations
    assert update.read_only_hint is False
    assert update.destructive_hint is True
    assert update.idempotent_hint is True


@pytest.mark.anyio
async def test_finance_lists_its_tools_with_annotations():
    async with over_stdio(FINANCE) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) == {"list_invoices", "pay_invoice"}
    assert set(tools["pay_invoice"].input_schema["properties"]) == {"invoice_id", "amount"}
    assert tools["list_invoices"].annotations.read_only_hint is True
    pay = tools["pay_invoice"].annotations
    assert pay.read_only_hint is False
    assert pay.destructive_hint is True
    assert pay.idempotent_hint is False


@pytest.mark.anyio
async def test_search_matches_company_and_email_and_honours_limit():
    async with over_stdio(CRM) as client:
        acme = await client.call_tool("search_customers", {"query": "ACME"})
        first_only = await client.call_tool("search_customers", {"query": "acme", "limit": 1})
        by_email = await client.call_tool("search_customers", {"query": "fjordenergy.example"})
        nothing = await client.call_tool("search_customers", {"query": "no such company"})

    assert not acme.is_error
    assert [c["id"] for c in acme.structured_content["customers"]] == ["C-1001", "C-1002"]
    assert first_only.structured_content["total"] == 2
    assert len(first_only.structured_content["customers"]) == 1
    assert [c["name"] for c in by_email.structured_content["customers"]] == ["Sofia Rossi"]
    assert nothing.structured_content == {"query": "no such company", "total": 0, "customers": []}


@pytest.mark.anyio
async def test_unknown_customer_is_a_tool_error_not_a_crash():
    async with over_stdio(CRM) as client:
        missing = await client.call_tool("get_customer", {"customer_id": "C-9999"})
        still_alive = await client.call_tool("get_customer", {"customer_id": "C-1003"})

    assert missing.is_error
    assert "C-9999" in error_text(missing)
    assert still_alive.structured_content["company"] == "Brightline Health"


@pytest.mark.anyio
async def test_update_record_changes_the_record_and_rejects_other_fields():
    async with over_stdio(CRM) as client:
        updated = await client.call_tool(
            "update_record", {"customer_id": "C-1004", "field": "status", "value": "active"}
        )
        reread = await client.call_tool("get_customer", {"customer_id": "C-1004"})
        bad_field = await client.call_tool("update_record", {"customer_id": "C-1004", "field": "company", "value": "X"})
        bad_value = await client.call_tool("update_record", {"customer_id": "C-1004", "field": "tier", "value": "gold"})

    assert updated.structured_content["status"] == "active"
    assert updated.structured_content["updated_at"] != "2026-10-14T09:30:00Z"
    assert reread.structured_content == updated.structured_content
    assert bad_field.is_error and "company" in error_text(bad_field)
    assert bad_value.is_error and "gold" in error_text(bad_value)


@pytest.mark.anyio
async def test_crm_resources_and_prompt():
    async with over_stdio(CRM) as client:
        static = [str(r.uri) for r in (await client.list_resources()).resources]
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        record = (await client.read_resource("crm://customers/C-1007")).contents[0]
        schema = (await client.read_resource("crm://schema")).contents[0]
        prompt = await client.get_prompt("account_summary", {"customer_id": "C-1007"})
        with pytest.raises(MCPError, match="C-0000"):
            await client.read_resource("crm://customers/C-0000")

    assert static == ["crm://schema"]
    assert templates == ["crm://customers/{customer_id}"]
    assert isinstance(record, TextResourceContents) and record.mime_type == "application/json"
    assert json.loads(record.text)["company"] == "Fjord Energy"
    assert json.loads(schema.text)["editable_fields"] == ["status", "tier", "owner", "notes", "email"]
    assert "Fjord Energy" in prompt.messages[0].content.text


@pytest.mark.anyio
async def test_pay_invoice_requires_the_exact_outstanding_amount():
    async with over_stdio(FINANCE) as client:
        overdue = await client.call_tool("list_invoices", {"status": "overdue"})
        wrong = await client.call_tool("pay_invoice", {"invoice_id": "INV-2002", "amount": 340.0})
        paid = await client.call_tool("pay_invoice", {"invoice_id": "INV-2002", "amount": 3400.0})
        again = await client.call_tool("pay_invoice", {"invoice_id": "INV-2002", "amount": 3400.0})
        after = await client.call_tool("list_invoices", {"customer_id": "C-1002"})

    assert [i["id"] for i in overdue.structured_content["invoices"]] == ["INV-2002", "INV-2003", "INV-2006"]
    assert wrong.is_error and "3400.00" in error_text(wrong)
    assert not paid.is_error
    assert paid.structured_content["payment_id"].startswith("PAY-")
    assert paid.structured_content["amount"] == "3400.00"
    assert again.is_error and "already paid" in error_text(again)
    assert after.structured_content["invoices"][0]["status"] == "paid"


@pytest.mark.anyio
async def test_list_invoices_rejects_an_unknown_status():
    async with over_stdio(FINANCE) as client:
        result = await client.call_tool("list_invoices", {"status": "late"})

    assert result.is_error and "overdue" in error_text(result)


@pytest.mark.anyio
async def test_finance_resource_and_prompt():
    async with over_stdio(FINANCE) as client:
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        invoice = (await client.read_resource("finance://invoices/INV-2003")).contents[0]
        prompt = await client.get_prompt("overdue_reminder", {"invoice_id": "INV-2003"})
        with pytest.raises(MCPError, match="already paid"):
            await client.get_prompt("overdue_reminder", {"invoice_id": "INV-2004"})

    assert templates == ["finance://invoices/{invoice_id}"]
    assert invoice.mime_type == "application/json"
    assert json.loads(invoice.text)["amount"] == "48000.00"
    assert "INV-2003" in prompt.messages[0].content.text


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_crm_over_http(crm_http_url, mode):
    async with Client(crm_http_url, mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("get_customer", {"customer_id": "C-1011"})
        version = client.protocol_version

    assert names == {"search_customers", "get_customer", "update_record"}
    assert result.structured_content["company"] == "Juniper Retail"
    assert version in (HANDSHAKE_PROTOCOL_VERSIONS if mode == "legacy" else MODERN_PROTOCOL_VERSIONS)


def test_agent_reports_failed_calls_and_keeps_going(crm_http_url):
    env = {**os.environ, "GATEWAY_KEY": "demo-key"}
    run = subprocess.run(
        [sys.executable, str(AGENT), "--url", crm_http_url, "--no-namespace"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert run.returncode == 0, run.stderr
    assert "C-1001  Dana Whitfield" in run.stdout
    # The finance tools live on the other backend: both calls fail, are printed, and the run still finishes.
    assert run.stdout.count("tool error: Unknown tool") == 2
    assert "Done: 3 call(s) succeeded, 2 failed or were refused." in run.stdout


def test_agent_without_a_key_says_how_to_give_one():
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_KEY"}
    run = subprocess.run([sys.executable, str(AGENT)], capture_output=True, text=True, env=env, timeout=60)

    assert run.returncode == 2
    assert "GATEWAY_KEY" in run.stderr
