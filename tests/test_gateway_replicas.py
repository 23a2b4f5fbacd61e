"""Two gateway processes on one PostgreSQL: each keeps its own audit chain, and the log verifies."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from harness import GatewayProcess, free_port, mcp_client, run_cli, stdio_connector, write_gateway_config


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
