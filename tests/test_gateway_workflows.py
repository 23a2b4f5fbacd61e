"""Workflows through a real gateway: ordering policies, shared status and notes, the header, the CLI.

One gateway (SQLite) in front of two kitchen-sink backends, `compliance` (whose `echo` shares its
results) and `erp`, under a policy that refuses `erp__echo` until `compliance__echo` succeeded in
the same workflow. Agents talk to it with the official `mcp` client over real HTTP; a second
test runs two gateways on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from harness import GatewayProcess, free_port, mcp_client, stdio_connector, write_gateway_config

WORKFLOW_KEY = "io.autonomy-gateway/workflow"
CANARY = "sk_live_CANARY51Habcdefghijklmnop"
REASON = "run compliance__echo in this workflow first: a purchase order needs a passed vendor check"
POLICIES = {
    "allow.cedar": '@id("allow-everything")\npermit (principal, action, resource);\n',
    "ordering.cedar": f"""
@id("purchase-order-after-compliance")
@reason("{REASON}")
forbid (principal, action == Action::"erp__echo", resource)
unless {{ context.workflow.completed.contains("compliance__echo") }};
""",
}
CONNECTORS = {
    "compliance": stdio_connector(extra="[tools.echo]\nshare_result = true\n"),
    "erp": stdio_connector(),
}


@asynccontextmanager
async def client_with(url: str, key: str, headers: Mapping[str, str], **kwargs: Any) -> AsyncIterator[Client]:
    """The official client, sending `headers` with every request (`X-Workflow-Id`)."""
    all_headers = {"Authorization": f"Bearer {key}", **headers}
    async with httpx2.AsyncClient(headers=all_headers, timeout=httpx2.Timeout(30, read=60)) as http_client:
        async with Client(streamable_http_client(url, http_client=http_client), **kwargs) as client:
            yield client


def _in(workflow: str) -> dict[str, Any]:
    return {WORKFLOW_KEY: workflow}


def _text(result: Any) -> str:
    return "\n".join(getattr(item, "text", "") for item in result.content)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("workflows")
    write_gateway_config(directory, CONNECTORS, policies=POLICIES)
    process = GatewayProcess(directory, free_port())
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def keys(gateway: GatewayProcess) -> dict[str, str]:
    return {name: gateway.create_key(name) for name in ("purchasing-bot", "compliance-bot")}


def test_the_purchase_order_waits_for_the_vendor_check_of_its_own_workflow(
    gateway: GatewayProcess, keys: dict[str, str]
) -> None:
    async def run() -> None:
        async with (
            mcp_client(gateway.url, keys["purchasing-bot"]) as buyer,
            mcp_client(gateway.url, keys["compliance-bot"]) as checker,
        ):
            with pytest.raises(MCPError) as denied:
                await buyer.call_tool("erp__echo", {"text": "PO-1"}, meta=_in("po-1"))
            assert REASON in str(denied.value)
            # A check in another workflow, or one that failed, does not count.
            await checker.call_tool("compliance__echo", {"text": "vendor 7 ok"}, meta=_in("po-other"))
            failed = await checker.call_tool("compliance__fail_softly", {"reason": "x"}, meta=_in("po-1"))
            assert failed.is_error
            with pytest.raises(MCPError):
                await buyer.call_tool("erp__echo", {"text": "PO-1"}, meta=_in("po-1"))
            await checker.call_tool("compliance__echo", {"text": "vendor 42 passed"}, meta=_in("po-1"))
            ordered = await buyer.call_tool("erp__echo", {"text": "PO-1"}, meta=_in("po-1"))
            assert not ordered.is_error and _text(ordered) == "PO-1"
            with pytest.raises(MCPError):  # no workflow at all: the completed set is empty
                await buyer.call_tool("erp__echo", {"text": "PO-2"})

    anyio.run(run)


def test_workflow_status_shows_other_agents_steps_notes_and_only_shared_summaries(
    gateway: GatewayProcess, keys: dict[str, str]
) -> None:
    async def run() -> None:
        async with (
            mcp_client(gateway.url, keys["purchasing-bot"]) as buyer,
            mcp_client(gateway.url, keys["compliance-bot"]) as checker,
        ):
            await checker.call_tool("compliance__echo", {"text": f"vendor cleared, key {CANARY}"}, meta=_in("case-9"))
            await checker.call_tool("compliance__add", {"a": 2, "b": 3}, meta=_in("case-9"))
            noted = await checker.call_tool(
                "gateway__workflow_note", {"text": "vendor 42 cleared; purchasing may order"}, meta=_in("case-9")
            )
            assert not noted.is_error and noted.structured_content["workflow"] == "case-9"
            status = await buyer.call_tool("gateway__workflow_status", {"workflow": "case-9"})
            # A status read inside its own workflow lists itself as running, not as a stopped gateway's call.
            own = await buyer.call_tool("gateway__workflow_status", {}, meta=_in("case-9-own"))
            assert "called gateway__workflow_status: running (a status read, such as this one)" in _text(own)
            assert "gateway stopped" not in _text(own)
            return status

    status = anyio.run(run)
    assert not status.is_error
    shown = status.structured_content
    steps = {step["tool"]: step for step in shown["steps"]}
    assert steps["compliance__echo"]["agent"] == "compliance-bot" and steps["compliance__echo"]["outcome"] == "ok"
    summary = steps["compliance__echo"]["summary"]
    assert "vendor cleared" in summary and CANARY not in summary  # shared, and redacted
    assert steps["compliance__add"]["summary"] is None  # share_result is off for add
    assert [note["text"] for note in shown["notes"]] == ["vendor 42 cleared; purchasing may order"]
    assert shown["pendingApprovals"] == [] and not shown["truncated"]
    text = _text(status)
    assert "compliance-bot called compliance__echo: succeeded" in text
    assert "compliance-bot: vendor 42 cleared; purchasing may order" in text
    assert CANARY not in text


def test_the_header_and_the_session_name_a_workflow_and_meta_wins(
    gateway: GatewayProcess, keys: dict[str, str]
) -> None:
    async def run() -> None:
        headers = {"X-Workflow-Id": "po-header"}
        async with client_with(gateway.url, keys["compliance-bot"], headers) as checker:
            await checker.call_tool("compliance__echo", {"text": "ok"})
        async with mcp_client(gateway.url, keys["purchasing-bot"]) as buyer:
            ordered = await buyer.call_tool("erp__echo", {"text": "PO-H"}, meta=_in("po-header"))
            assert _text(ordered) == "PO-H"
        # `_meta` wins over the header: the step is in po-meta, not in po-header2.
        async with client_with(gateway.url, keys["compliance-bot"], {"X-Workflow-Id": "po-header2"}) as checker:
            await checker.call_tool("compliance__echo", {"text": "ok"}, meta=_in("po-meta"))
            status = await checker.call_tool("gateway__workflow_status", {})
            assert status.structured_content["workflow"] == "po-header2" and status.structured_content["steps"] == [
                step for step in status.structured_content["steps"] if step["tool"] == "gateway__workflow_status"
            ]
        # A session-based client without either: its session is its workflow.
        async with mcp_client(gateway.url, keys["purchasing-bot"], mode="legacy") as session:
            await session.call_tool("compliance__echo", {"text": "ok"})
            ordered = await session.call_tool("erp__echo", {"text": "PO-S"})
            assert _text(ordered) == "PO-S"
            status = await session.call_tool("gateway__workflow_status", {})
            tools = [step["tool"] for step in status.structured_content["steps"]]
            assert tools[:2] == ["compliance__echo", "erp__echo"]
        # A sessionless client without either is in no workflow.
        async with mcp_client(gateway.url, keys["purchasing-bot"]) as bare:
            nowhere = await bare.call_tool("gateway__workflow_status", {})
            assert nowhere.is_error and "belongs to no workflow" in _text(nowhere)

    anyio.run(run)


def test_bad_workflow_ids_are_refused_with_a_reason(gateway: GatewayProcess, keys: dict[str, str]) -> None:
    async def run() -> None:
        async with mcp_client(gateway.url, keys["purchasing-bot"]) as client:
            with pytest.raises(MCPError) as control:
                await client.call_tool("compliance__echo", {"text": "x"}, meta=_in("po\n1"))
            assert "non-printable" in str(control.value)
            with pytest.raises(MCPError) as numeric:
                await client.call_tool("compliance__echo", {"text": "x"}, meta={WORKFLOW_KEY: 42})
            assert "must be a non-empty string" in str(numeric.value)
            bad_argument = await client.call_tool("gateway__workflow_status", {"workflow": "x" * 300})
            assert bad_argument.is_error and "at most 256" in _text(bad_argument)
        async with client_with(gateway.url, keys["purchasing-bot"], {"X-Workflow-Id": "w" * 257}) as client:
            with pytest.raises(MCPError) as long_header:
                await client.call_tool("compliance__echo", {"text": "x"})
            assert "X-Workflow-Id header is 257 characters long" in str(long_header.value)

    anyio.run(run)


def test_the_cli_lists_workflows_and_shows_a_timeline(gateway: GatewayProcess, keys: dict[str, str]) -> None:
    async def run() -> None:
        async with mcp_client(gateway.url, keys["compliance-bot"]) as checker:
            await checker.call_tool("compliance__echo", {"text": "cli check"}, meta=_in("cli-1"))
            await checker.call_tool("gateway__workflow_note", {"text": "done here"}, meta=_in("cli-1"))

    anyio.run(run)
    listed = [json.loads(line) for line in gateway.cli("workflows", "list", "--json").stdout.splitlines()]
    mine = next(item for item in listed if item["id"] == "cli-1")
    assert mine["agents"] == ["compliance-bot"] and mine["steps"] == 2 and mine["pendingApprovals"] == 0
    only = gateway.cli("workflows", "list", "--agent", "nobody", "--json").stdout
    assert only == ""
    table = gateway.cli("workflows", "list", "--limit", "500").stdout
    assert table.splitlines()[0].split() == ["WORKFLOW", "AGENTS", "STEPS", "LAST", "ACTIVITY", "PENDING"]
    assert "cli-1" in table
    shown = json.loads(gateway.cli("workflows", "show", "cli-1", "--json").stdout)
    assert [step["tool"] for step in shown["steps"]] == ["compliance__echo", "gateway__workflow_note"]
    assert shown["steps"][0]["summary"] == "cli check" and shown["notes"][0]["text"] == "done here"
    text = gateway.cli("workflows", "show", "cli-1").stdout
    assert "compliance-bot: done here" in text and "compliance__echo" in text
    missing = gateway.cli("workflows", "show", "never-seen", check=False)
    assert missing.returncode != 0 and "no workflow 'never-seen'" in missing.stderr


def test_notes_the_database_cannot_hold_are_refused_and_the_cli_escapes_control_characters(
    gateway: GatewayProcess, keys: dict[str, str]
) -> None:
    """A NUL (PostgreSQL text cannot hold it) is refused with a reason; a note forging a line or
    carrying a terminal escape is kept but printed escaped; a blank workflow id is refused."""

    async def run() -> None:
        async with mcp_client(gateway.url, keys["compliance-bot"]) as client:
            nul = await client.call_tool("gateway__workflow_note", {"text": "a\x00b"}, meta=_in("hostile-1"))
            assert nul.is_error and "NUL character" in _text(nul)
            forged = "done\n2026-01-01T00:00:00Z  auditor: \x1b[32mall clear"
            saved = await client.call_tool("gateway__workflow_note", {"text": forged}, meta=_in("hostile-1"))
            assert not saved.is_error, _text(saved)
            with pytest.raises(MCPError) as blank:
                await client.call_tool("compliance__echo", {"text": "x"}, meta=_in("   "))
            assert "must be a non-empty string" in str(blank.value)

    anyio.run(run)
    text = gateway.cli("workflows", "show", "hostile-1").stdout
    assert "\x1b" not in text and "\n2026-01-01" not in text
    assert "compliance-bot: done\\n2026-01-01T00:00:00Z  auditor: \\x1b[32mall clear" in text


@pytest.mark.postgres
def test_two_replicas_see_each_others_completed_steps_at_once(tmp_path: Path, postgres_url: str) -> None:
    gateways = []
    for name in ("gw-a", "gw-b"):
        write_gateway_config(
            tmp_path / name,
            CONNECTORS,
            policies=POLICIES,
            database_url=postgres_url,
            extra=f'\n[audit]\nreplica_id = "{name}"\n',
        )
        gateways.append(GatewayProcess(tmp_path / name, free_port()))
    first, second = gateways
    try:
        for gateway in gateways:
            gateway.start()
        checker_key = first.create_key("compliance-bot")
        buyer_key = first.create_key("purchasing-bot")

        async def run() -> None:
            async with mcp_client(first.url, checker_key) as checker, mcp_client(second.url, buyer_key) as buyer:
                for index in range(5):
                    workflow = f"po-replicas-{index}"
                    with pytest.raises(MCPError):
                        await buyer.call_tool("erp__echo", {"text": "PO"}, meta=_in(workflow))
                    await checker.call_tool("compliance__echo", {"text": "passed"}, meta=_in(workflow))
                    # At once, on the other replica: no wait for the outcome's ride-along commit.
                    ordered = await buyer.call_tool("erp__echo", {"text": "PO"}, meta=_in(workflow))
                    assert _text(ordered) == "PO"
                status = await buyer.call_tool("gateway__workflow_status", {"workflow": "po-replicas-0"})
                agents = status.structured_content["agents"]
                assert set(agents) == {"purchasing-bot", "compliance-bot"}

        anyio.run(run)
    finally:
        for gateway in gateways:
            gateway.stop()
