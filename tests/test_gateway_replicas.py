"""Gateway processes sharing one database: each keeps its own audit chain, and the log verifies.

A replica id belongs to one live process at a time (its lease); a process that dies leaves its
chain to be closed by a live one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness import GatewayProcess, free_port, mcp_client, run_cli, stdio_connector, wait_until, write_gateway_config


@pytest.mark.postgres
def test_two_gateways_share_postgresql_and_the_audit_log_verifies(tmp_path: Path, postgres_url: str) -> None:
    gateways = []
    for name in ("gw-a", "gw-b"):
        directory = tmp_path / name
        write_gateway_config(
            directory,
            {"sink": stdio_connector()},
            database_url=postgres_url,
            extra=f'\n[audit]\nreplica_id = "{name}"\ncheckpoint_every = 5\n',
        )
        gateways.append(GatewayProcess(directory, free_port()))
    first, second = gateways
    try:
        for gateway in gateways:  # both migrate the same database at start
            gateway.start()
        key = first.create_key("shared-agent")  # one key store: valid on both

        async def calls(gateway: GatewayProcess, label: str) -> None:
            async with mcp_client(gateway.url, key) as client:
                for index in range(12):
                    await client.call_tool("sink__echo", {"text": f"{label}-{index}"})

        async def both() -> None:
            async with anyio.create_task_group() as group:
                group.start_soon(calls, first, "a")
                group.start_soon(calls, second, "b")

        anyio.run(both)
    finally:
        for gateway in gateways:
            gateway.stop()
    verified = run_cli("audit", "verify", "--json", "--config", str(first.config_path))
    report = json.loads(verified.stdout)
    assert report["ok"] is True
    assert {"gw-a", "gw-b"} <= {replica["replica"] for replica in report["replicas"]}
    searched = run_cli(
        "audit", "search", "--json", "--limit", "100", "--tool", "sink__echo", "--config", str(second.config_path)
    )
    replicas = {json.loads(line)["replica"] for line in searched.stdout.splitlines()}
    assert replicas == {"gw-a", "gw-b"}


def _gateway(directory: Path, database_url: str, audit: str = "") -> GatewayProcess:
    write_gateway_config(
        directory, {"sink": stdio_connector()}, database_url=database_url, extra=f"\n[audit]\n{audit}\n"
    )
    return GatewayProcess(directory, free_port())


def _search(gateway: GatewayProcess, *args: str) -> list[dict[str, Any]]:
    found = gateway.cli("audit", "search", "--json", "--limit", "1000", *args)
    return [json.loads(line) for line in found.stdout.splitlines()]


def test_two_gateways_with_default_replica_ids_on_one_database_each_write_a_chain(
    tmp_path: Path, database_url: str
) -> None:
    gateways = [_gateway(tmp_path / name, database_url) for name in ("one", "two")]
    try:
        for gateway in gateways:
            gateway.start()
        key = gateways[0].create_key("shared-agent")

        async def calls(gateway: GatewayProcess, label: str) -> None:
            async with mcp_client(gateway.url, key) as client:
                for index in range(8):
                    await client.call_tool("sink__echo", {"text": f"{label}-{index}"})

        async def both() -> None:
            async with anyio.create_task_group() as group:
                for label, gateway in zip("ab", gateways):
                    group.start_soon(calls, gateway, label)

        anyio.run(both)
    finally:
        for gateway in gateways:
            gateway.stop()
    replicas = {call["replica"] for call in _search(gateways[1], "--tool", "sink__echo")}
    assert len(replicas) == 2
    assert all(re.fullmatch(rf"{re.escape(_host())}-p\d+-[0-9a-f]{{6}}", replica) for replica in replicas), replicas
    report = json.loads(gateways[0].cli("audit", "verify", "--json").stdout)
    assert report["ok"] is True and replicas <= {replica["replica"] for replica in report["replicas"]}


def test_a_configured_replica_id_held_by_a_live_gateway_refuses_a_second_one(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'gateway.db'}"
    first = _gateway(tmp_path / "first", database_url, 'replica_id = "gw-same"')
    second = _gateway(tmp_path / "second", database_url, 'replica_id = "gw-same"')
    first.start()
    try:
        second.start(wait_ready=False)
        assert second.process is not None and first.process is not None
        assert second.process.wait(60) != 0
        records = [json.loads(line) for line in second.log_text().splitlines() if line.startswith("{")]
        [refusal] = [r for r in records if r["message"].startswith("gateway not started: ")]
        assert refusal["level"] == "error" and refusal["message"].startswith(
            "gateway not started: the audit replica id 'gw-same' is in use by another live gateway process "
            f"(host {socket.gethostname()}, pid {first.process.pid}): it renewed its lease at "
        )
        assert "give this one its own [audit] replica_id" in refusal["message"]
        assert first.readyz()  # the first one serves on, undisturbed
        key = first.create_key("still-served")

        async def call() -> None:
            async with mcp_client(first.url, key) as client:
                await client.call_tool("sink__echo", {"text": "after the refusal"})

        anyio.run(call)
    finally:
        first.stop()
        second.stop()
    assert {call["replica"] for call in _search(first, "--tool", "sink__echo")} == {"gw-same"}
    assert first.cli("audit", "verify").returncode == 0


def test_a_live_gateway_closes_the_calls_a_killed_one_left_open(tmp_path: Path, database_url: str) -> None:
    """Default ids never come back after a crash: the survivor marks the dead one's call unknown."""
    victim = _gateway(tmp_path / "victim", database_url, "lease_seconds = 3")
    survivor = _gateway(tmp_path / "survivor", database_url, "lease_seconds = 3")
    try:
        victim.start()
        survivor.start()
        key = victim.create_key("victim-agent")
        in_flight = anyio.Event()

        async def call_and_kill() -> None:
            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                in_flight.set()

            async def call() -> None:
                try:
                    async with mcp_client(victim.url, key, mode="legacy") as client:
                        await client.call_tool("sink__slow", {"steps": 100000}, progress_callback=on_progress)
                except Exception:  # the gateway dies under this call; that is the point
                    return

            async with mcp_client(survivor.url, key) as client:  # a call in the survivor's own chain
                await client.call_tool("sink__echo", {"text": "survivor"})
            async with anyio.create_task_group() as group:
                group.start_soon(call)
                with anyio.fail_after(30):
                    await in_flight.wait()
                assert victim.process is not None
                os.kill(victim.process.pid, signal.SIGKILL)
                victim.process.wait(10)
                group.cancel_scope.cancel()

        anyio.run(call_and_kill)
        wait_until(
            lambda: _search(survivor, "--tool", "sink__slow")[0]["outcome"] == "unknown",
            timeout=60,
            what="the survivor to record the killed gateway's open call as unknown",
        )
    finally:
        victim.stop()
        survivor.stop()
    [closed] = _search(survivor, "--tool", "sink__slow")
    assert closed["result"]["recovered"] is True and closed["result"]["error"]["type"] == "GatewayStopped"
    [own] = _search(survivor, "--tool", "sink__echo")
    assert closed["replica"] != own["replica"]  # closed in the killed process's chain, not the survivor's
    [recovered] = [
        json.loads(line)
        for line in survivor.cli("audit", "search", "--kind", "recovered", "--json").stdout.splitlines()
    ]
    assert recovered["replica"] == closed["replica"] and recovered["call_ids"] == [closed["call_id"]]
    assert recovered["closed_by"] == own["replica"]  # the survivor, writing into the dead process's chain
    assert survivor.cli("audit", "verify").returncode == 0


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.:@-]", "-", socket.gethostname()).strip("-.")
