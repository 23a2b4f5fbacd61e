"""`context.rate` end to end: real gateways, real backends, the official client over HTTP.

A policy denies the sixth echo of an agent in a minute with its reason, other agents and other
tools are unaffected, and two replicas on PostgreSQL count each other's calls. `gateway policy
test` and `gateway policy explain` take the counts as given.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from harness import (
    ALLOW_EVERYTHING,
    GatewayProcess,
    free_port,
    mcp_client,
    run_cli,
    stdio_connector,
    write_gateway_config,
)

ROOT = Path(__file__).resolve().parents[1]
POLICY_DENIED = -32003

ECHO_BURST = """
@id("echo-burst")
@reason("more than 5 echoes in a minute: slow down")
forbid (principal, action == Action::"sink__echo", resource) when { context.rate.tool_minute > 5 };
"""
#: Denies `sink__add` once the agent made five calls to other tools in the last minute: a probe that
#: does not count towards what it looks at, so polling it shows when another replica's calls arrive.
BUSY_ELSEWHERE = """
@id("busy-elsewhere")
@reason("five calls to other tools in the last minute")
forbid (principal, action == Action::"sink__add", resource)
when { context.rate.minute - context.rate.tool_minute >= 5 };
"""
POLICIES = {**ALLOW_EVERYTHING, "echo-burst.cedar": ECHO_BURST, "busy-elsewhere.cedar": BUSY_ELSEWHERE}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("rates-gateway")
    write_gateway_config(directory, {"sink": stdio_connector()}, policies=POLICIES)
    process = GatewayProcess(directory, free_port())
    process.start()
    yield process
    process.stop()


async def _echo(url: str, key: str, text: str) -> str:
    async with mcp_client(url, key) as client:
        result = await client.call_tool("sink__echo", {"text": text})
        return str(result.content[0].text)  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_the_sixth_call_in_a_minute_is_denied_with_the_reason_and_others_are_unaffected(
    gateway: GatewayProcess,
) -> None:
    burst, calm = gateway.create_key("burst-bot"), gateway.create_key("calm-bot")
    async with mcp_client(gateway.url, burst) as client:
        for index in range(5):
            result = await client.call_tool("sink__echo", {"text": f"call {index}"})
            assert not result.is_error
        with pytest.raises(MCPError) as denied:
            await client.call_tool("sink__echo", {"text": "one too many"})
        assert denied.value.error.code == POLICY_DENIED
        assert "more than 5 echoes in a minute: slow down" in denied.value.error.message
        # The refused call counted too: the next one is refused as well.
        with pytest.raises(MCPError):
            await client.call_tool("sink__echo", {"text": "still too many"})
        # Another tool of the same agent has its own count.
        assert not (await client.call_tool("sink__whoami", {})).is_error
    assert await _echo(gateway.url, calm, "unaffected") == "unaffected"
    records = [
        json.loads(line)
        for line in gateway.cli(
            "audit", "search", "--json", "--agent", "burst-bot", "--tool", "sink__echo"
        ).stdout.splitlines()
    ]
    assert sorted(record["decision"] for record in records) == ["allow"] * 5 + ["deny"] * 2
    assert {record["policy_ids"][0] for record in records if record["decision"] == "deny"} == {"echo-burst"}


@pytest.mark.postgres
def test_two_replicas_on_postgresql_count_each_others_calls(tmp_path: Path, postgres_url: str) -> None:
    replicas = []
    for name in ("replica-a", "replica-b"):
        directory = tmp_path / name
        write_gateway_config(
            directory,
            {"sink": stdio_connector()},
            database_url=postgres_url,
            policies=POLICIES,
            extra="\n[rates]\nsync_interval = 0.2\n",
        )
        replicas.append(GatewayProcess(directory, free_port()))
    first, second = replicas
    try:
        for replica in replicas:
            replica.start()
        key = first.create_key("shared-bot")

        async def scenario() -> None:
            async with mcp_client(second.url, key) as on_b:
                assert not (await on_b.call_tool("sink__add", {"a": 1, "b": 2})).is_error  # nothing elsewhere yet
                async with mcp_client(first.url, key) as on_a:
                    for index in range(5):
                        assert not (await on_a.call_tool("sink__echo", {"text": f"on a {index}"})).is_error

                # Polled with a deadline: B counts A's echoes after A writes them and B reads them.
                with anyio.fail_after(20):
                    while True:
                        try:
                            await on_b.call_tool("sink__add", {"a": 1, "b": 2})
                        except MCPError as exc:
                            assert "five calls to other tools in the last minute" in exc.error.message
                            break
                        await anyio.sleep(0.05)
                # B's first echo is the sixth of the minute across both replicas.
                with pytest.raises(MCPError) as denied:
                    await on_b.call_tool("sink__echo", {"text": "on b"})
                assert "more than 5 echoes in a minute: slow down" in denied.value.error.message

        anyio.run(scenario)
    finally:
        for replica in replicas:
            replica.stop()


CASES = """
[[case]]
name = "a quiet agent pays"
agent = "finance-assistant"
roles = ["finance"]
tool = "finance__pay_invoice"
arguments = { invoice_id = "INV-2008", amount = 980.00 }
expect = "allow"

[[case]]
name = "the sixth payment in a minute is denied"
agent = "finance-assistant"
roles = ["finance"]
tool = "finance__pay_invoice"
arguments = { invoice_id = "INV-2008", amount = 980.00 }
rate = { tool_minute = 6 }
expect = "deny"
policy = "payments-burst"

[[case]]
name = "a busy hour waits for a person"
agent = "finance-assistant"
roles = ["finance"]
tool = "finance__list_invoices"
rate = { hour = 500 }
expect = "hold"
policy = "busy-hour-needs-a-look"
approvers = ["role:finance-managers"]
"""

BUSY_HOUR = """
@id("busy-hour-needs-a-look")
@approvers("role:finance-managers")
@reason("more than 300 calls in an hour: a person looks before the next one runs")
permit (principal, action in Action::"call_tool", resource) when { context.rate.hour > 300 };
"""


def _policy_dir(directory: Path, cases: str = CASES) -> Path:
    """The quick start's policies and catalog, a rate-based approval policy, and `cases`."""
    policies = directory / "policies"
    shutil.copytree(ROOT / "policies" / "access", policies / "access")
    (policies / "approval").mkdir(parents=True)
    (policies / "approval" / "busy-hour.cedar").write_text(BUSY_HOUR)
    (policies / "tests").mkdir()
    shutil.copy(ROOT / "policies" / "tests" / "catalog.json", policies / "tests" / "catalog.json")
    (policies / "tests" / "rates.toml").write_text(cases)
    (directory / "gateway.toml").write_text('[policies]\ndir = "policies"\n')
    return policies


def test_policy_cases_set_the_rate_and_an_approval_policy_can_hold_a_burst(tmp_path: Path) -> None:
    policies = _policy_dir(tmp_path)
    tested = run_cli("policy", "test", "--dir", str(policies), check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 passed, 0 failed" in tested.stdout


def test_a_case_with_impossible_counts_is_refused_naming_the_file(tmp_path: Path) -> None:
    policies = _policy_dir(tmp_path, CASES.replace("rate = { hour = 500 }", "rate = { hour = 2, minute = 3 }"))
    tested = run_cli("policy", "test", "--dir", str(policies), check=False)
    assert tested.returncode != 0
    assert "rates.toml: case 3: rate: minute (3) cannot exceed hour (2)" in tested.stderr


def test_policy_explain_takes_the_rate(tmp_path: Path) -> None:
    policies = _policy_dir(tmp_path)
    common = [
        "policy", "explain", "--config", str(tmp_path / "gateway.toml"),
        "--catalog", str(policies / "tests" / "catalog.json"),
        "--agent", "finance-assistant", "--role", "finance", "--tool", "finance__pay_invoice",
        "--args", '{"invoice_id": "INV-2008", "amount": 980.0}',
    ]  # fmt: skip
    quiet = run_cli(*common, check=False)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    burst = run_cli(*common, "--rate", "tool_minute=6", check=False)
    assert burst.returncode == 3
    assert "more than 5 payments in a minute: slow down" in burst.stdout and "payments-burst" in burst.stdout
    wrong = run_cli(*common, "--rate", "tool_minute=lots", check=False)
    assert wrong.returncode == 2
    assert "--rate: expected NAME=COUNT such as tool_minute=6, got 'tool_minute=lots'" in wrong.stderr
