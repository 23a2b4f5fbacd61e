"""De-duplicated calls through real gateways: a backend counting executions, the official client, both databases."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness import GatewayProcess, eventually, free_port, mcp_client, write_gateway_config

PAYMENTS = Path(__file__).parent / "backends" / "payments.py"
#: Longest a test waits for a call that should answer.
CALL_DEADLINE = 30.0


def payments_connector(markers: Path, *, pay_extra: str = "") -> str:
    return f"""
kind = "mcp-stdio"
command = ["{sys.executable}", "{PAYMENTS}"]
env = {{ PAYMENTS_MARKERS = "{markers}" }}
idempotency_key = "digest"

[tools.pay_invoice]
idempotency_key = "args.invoice_id"
idempotency_window = "PT1H"
{pay_extra}

[tools.decline]
idempotency_key = "args.invoice_id"

[tools.transfer]
idempotency_window = 2
"""


def executions(markers: Path, tool: str, key: str) -> int:
    log = markers / "executions.log"
    return log.read_text().splitlines().count(f"{tool} {key}") if log.exists() else 0


def result_of(answer: Any) -> dict[str, Any]:
    assert not answer.is_error, answer.content
    return json.loads(answer.content[0].text)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, Path, str, str]]:
    directory = tmp_path_factory.mktemp(f"idempotency-{request.param}")
    markers = directory / "markers"
    markers.mkdir()
    url = request.getfixturevalue("module_postgres_url") if request.param == "postgres" else None
    write_gateway_config(directory, {"pay": payments_connector(markers)}, database_url=url)
    gateway = GatewayProcess(directory, free_port())
    gateway.start()
    try:
        yield gateway, markers, gateway.create_key("payer-a", "finance"), gateway.create_key("payer-b", "finance")
    finally:
        gateway.stop()


@pytest.mark.anyio
async def test_a_repeated_payment_is_replayed_not_executed_again_and_the_audit_log_says_so(world: Any) -> None:
    gateway, markers, key_a, key_b = world
    async with mcp_client(gateway.url, key_a) as first, mcp_client(gateway.url, key_b) as second:
        paid = result_of(await first.call_tool("pay__pay_invoice", {"invoice_id": "INV-1", "amount": 120.5}))
        again = await first.call_tool("pay__pay_invoice", {"invoice_id": "INV-1", "amount": 120.5})
        other_agent = await second.call_tool("pay__pay_invoice", {"amount": 120.5, "invoice_id": "INV-1"})
    assert paid == {"paid": "INV-1", "amount": 120.5, "execution": 1}
    assert result_of(again) == paid and result_of(other_agent) == paid
    assert again.meta is not None and again.meta["io.autonomy-gateway/replay"]["agent"] == "payer-a"
    assert executions(markers, "pay_invoice", "INV-1") == 1
    search = gateway.cli("audit", "search", "--json", "--tool", "pay__pay_invoice", "--outcome", "replayed")
    replays = [json.loads(line) for line in search.stdout.splitlines()]
    assert {call["agent"] for call in replays} == {"payer-a", "payer-b"}
    assert all("replay of call" in call["reason"] and "nothing was forwarded" in call["reason"] for call in replays)
    listed = [json.loads(line) for line in gateway.cli("idempotency", "list", "--json").stdout.splitlines()]
    record = next(r for r in listed if r["key"] == '{"invoice_id":"INV-1"}')
    assert record["state"] == "succeeded" and record["replays"] == 2


@pytest.mark.anyio
async def test_a_call_reusing_a_key_with_other_arguments_is_refused_not_answered_with_the_first_result(
    world: Any,
) -> None:
    gateway, markers, key_a, _ = world
    async with mcp_client(gateway.url, key_a) as client:
        paid = result_of(await client.call_tool("pay__pay_invoice", {"invoice_id": "INV-9", "amount": 980.0}))
        other = await client.call_tool("pay__pay_invoice", {"invoice_id": "INV-9", "amount": 10.0})
    assert paid["amount"] == 980.0
    assert other.is_error
    text = other.content[0].text
    assert "was not run" in text and "with other arguments" in text and "980" not in text
    assert executions(markers, "pay_invoice", "INV-9") == 1


@pytest.mark.anyio
async def test_two_concurrent_duplicates_execute_once_and_both_get_the_result(world: Any) -> None:
    gateway, markers, key_a, key_b = world
    waiting = anyio.Event()

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        if message and "waiting for the same call" in message:
            waiting.set()

    answers: dict[str, Any] = {}
    arguments = {"invoice_id": "INV-2", "amount": 10, "gate": "two"}
    async with mcp_client(gateway.url, key_a) as first, mcp_client(gateway.url, key_b) as second:

        async def call(name: str, client: Any, **kwargs: Any) -> None:
            answers[name] = await client.call_tool("pay__pay_invoice", arguments, **kwargs)

        with anyio.fail_after(CALL_DEADLINE):
            async with anyio.create_task_group() as group:
                group.start_soon(call, "first", first)
                await eventually((markers / "two.started").exists, what="the first payment to reach the backend")
                group.start_soon(partial(call, "second", second, progress_callback=progress))
                await waiting.wait()  # the repeat is waiting on the first, not running
                (markers / "two.open").write_text("open")
    assert result_of(answers["first"]) == result_of(answers["second"])
    assert executions(markers, "pay_invoice", "INV-2") == 1


@pytest.mark.anyio
async def test_a_repeat_outside_the_window_runs_again(world: Any) -> None:
    gateway, markers, key_a, _ = world
    arguments = {"to": "ACME", "amount": 5}
    async with mcp_client(gateway.url, key_a) as client:
        first = result_of(await client.call_tool("pay__transfer", arguments))
        assert result_of(await client.call_tool("pay__transfer", arguments)) == first  # within the 2 s window
        assert executions(markers, "transfer", "ACME:5.0") == 1
        with anyio.fail_after(CALL_DEADLINE):
            while executions(markers, "transfer", "ACME:5.0") == 1:  # the window runs out in real time
                answer = result_of(await client.call_tool("pay__transfer", arguments))
                await anyio.sleep(0.1)
    assert answer["execution"] == 2


@pytest.mark.anyio
async def test_digest_mode_tells_calls_apart_by_all_their_arguments(world: Any) -> None:
    gateway, markers, key_a, _ = world
    async with mcp_client(gateway.url, key_a) as client:
        one = result_of(await client.call_tool("pay__transfer", {"to": "Globex", "amount": 1}))
        same = result_of(await client.call_tool("pay__transfer", {"amount": 1.0, "to": "Globex"}))
        other = result_of(await client.call_tool("pay__transfer", {"to": "Globex", "amount": 2}))
    assert one == same and other["amount"] == 2
    assert executions(markers, "transfer", "Globex:1.0") == 1 and executions(markers, "transfer", "Globex:2.0") == 1


@pytest.mark.anyio
async def test_read_only_tools_are_not_deduplicated_by_the_connector_wide_key(world: Any) -> None:
    gateway, markers, key_a, _ = world
    async with mcp_client(gateway.url, key_a) as client:
        for _ in range(3):
            result_of(await client.call_tool("pay__invoice_status", {"invoice_id": "INV-7"}))
    assert executions(markers, "invoice_status", "INV-7") == 3


@pytest.mark.anyio
async def test_a_tool_error_is_not_replayed_and_a_repeat_runs_again(world: Any) -> None:
    gateway, markers, key_a, _ = world
    async with mcp_client(gateway.url, key_a) as client:
        first = await client.call_tool("pay__decline", {"invoice_id": "INV-3"})
        second = await client.call_tool("pay__decline", {"invoice_id": "INV-3"})
    assert first.is_error and second.is_error
    assert "declined (1)" in first.content[0].text and "declined (2)" in second.content[0].text
    assert executions(markers, "decline", "INV-3") == 2


@pytest.mark.anyio
async def test_an_unknown_outcome_after_sigkill_is_refused_until_an_operator_clears_it(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    connector = payments_connector(markers, pay_extra="idempotency_wait = 0.2")
    write_gateway_config(tmp_path, {"pay": connector}, extra="\n[audit]\nlease_seconds = 1\n")
    gateway = GatewayProcess(tmp_path, free_port())
    arguments = {"invoice_id": "INV-9", "amount": 99, "gate": "killed"}
    try:
        gateway.start()
        key = gateway.create_key("payer-a", "finance")
        with suppress(Exception):  # the agent's connection dies with the gateway
            async with mcp_client(gateway.url, key) as client, anyio.create_task_group() as group:
                group.start_soon(partial(client.call_tool, "pay__pay_invoice", arguments))
                await eventually((markers / "killed.started").exists, what="the payment to reach the backend")
                assert gateway.process is not None
                gateway.process.send_signal(signal.SIGKILL)
                gateway.process.wait(10)
                group.cancel_scope.cancel()
        gateway.start()
        async with mcp_client(gateway.url, key) as client:
            with anyio.fail_after(CALL_DEADLINE):
                while True:  # "still running" until the live gateway closed the dead one's runs
                    answer = await client.call_tool("pay__pay_invoice", arguments)
                    if "is still running" not in answer.content[0].text:
                        break
                    await anyio.sleep(0.1)
            text = answer.content[0].text
            assert answer.is_error and "its outcome is unknown" in text and "Check in the backend" in text
            assert executions(markers, "pay_invoice", "INV-9") == 0  # neither re-run nor replayed
            listed = gateway.cli("idempotency", "list", "--state", "unknown", "--json").stdout.splitlines()
            record_id = json.loads(listed[0])["id"]
            assert f"gateway idempotency clear {record_id}" in text
            table = gateway.cli("idempotency", "list", "--state", "unknown").stdout
            assert record_id in table and "None" not in table  # an unknown run has no expiry: shown as "-"
            refused = gateway.cli("idempotency", "clear", "no-such-record", "--reason", "checked", check=False)
            assert refused.returncode == 1 and "no idempotency record has the id" in refused.stderr
            gateway.cli("idempotency", "clear", record_id, "--reason", "the bank shows no payment for INV-9")
            paid = result_of(await client.call_tool("pay__pay_invoice", {"invoice_id": "INV-9", "amount": 99}))
        assert paid["execution"] == 1
        events = gateway.cli("audit", "search", "--kind", "console", "--json").stdout.splitlines()
        cleared = [json.loads(line) for line in events]
        assert any(e["action"] == "idempotency_cleared" and e["target"] == record_id for e in cleared), cleared
    finally:
        gateway.stop()
