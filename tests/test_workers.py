"""`gateway serve --workers N`: one port, N processes, no sticky sessions, a supervisor that keeps them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from gateway.workers import RestartPolicy, Supervisor
from harness import (
    OPS_HEADERS,
    GatewayProcess,
    eventually,
    free_port,
    gateway_command,
    mcp_client,
    open_legacy_session,
    raw_exchange,
    run_cli,
    settled,
    stdio_connector,
    wait_until,
    write_gateway_config,
)

WORKER_DEADLINE = 90.0  # two workers start their backends at once on a two-core machine


def _start_workers(gateway: GatewayProcess, count: int) -> None:
    gateway.process = subprocess.Popen(
        gateway_command(
            "serve", "--config", str(gateway.config_path), "--port", str(gateway.port), "--workers", str(count)
        ),
        stdout=gateway.log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _ready_workers(gateway: GatewayProcess) -> set[str]:
    """Worker indexes seen answering /readyz with 200 (new connections spread over the workers)."""
    seen: set[str] = set()
    for _ in range(8):
        response = httpx.get(f"{gateway.base_url}/readyz", headers=OPS_HEADERS, timeout=5)
        if settled(response):
            seen.add(response.headers["x-gateway-worker"])
    return seen


def _wait_all_ready(gateway: GatewayProcess, count: int) -> None:
    expected = {str(i) for i in range(count)}
    seen: set[str] = set()

    def all_seen() -> bool:
        assert gateway.process is not None
        if gateway.process.poll() is not None:
            raise AssertionError(f"gateway exited with {gateway.process.returncode}:\n{gateway.log_text()}")
        seen.update(_ready_workers(gateway))
        return seen >= expected

    wait_until(
        all_seen, timeout=WORKER_DEADLINE, what=f"workers {sorted(expected)} to be ready; log:\n{gateway.log_text()}"
    )


def _supervisor_events(gateway: GatewayProcess, message: str) -> list[dict[str, Any]]:
    events = []
    for line in gateway.log_text().splitlines():
        if line.startswith("{") and f'"message":"{message}"' in line:
            events.append(json.loads(line))
    return events


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _many_clients(url: str, key: str, clients: int, calls: int) -> list[str]:
    results: list[str] = []

    async def one(label: int) -> None:
        async with mcp_client(url, key) as client:  # 2026-07-28: stateless, any worker serves any call
            for index in range(calls):
                result = await client.call_tool("sink__echo", {"text": f"{label}-{index}"})
                assert not result.is_error
                results.append(result.content[0].text)

    async with anyio.create_task_group() as group:
        for label in range(clients):
            group.start_soon(one, label)
    return results


@pytest.mark.postgres
def test_two_workers_serve_one_port_restart_when_killed_and_stop_on_sigterm(tmp_path: Path, postgres_url: str) -> None:
    write_gateway_config(
        tmp_path, {"sink": stdio_connector()}, database_url=postgres_url, extra='\n[audit]\nreplica_id = "gw"\n'
    )
    gateway = GatewayProcess(tmp_path, free_port())
    key = gateway.create_key("busy-agent")
    _start_workers(gateway, 2)
    try:
        _wait_all_ready(gateway, 2)
        assert gateway.readyz()["checks"]["signals"] == {"state": "listening"}
        # Every worker refuses a huge header block before any work (new connections spread over them).
        huge = b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 131072 + b"\r\nConnection: close\r\n\r\n"
        for _ in range(12):
            assert raw_exchange(gateway.port, huge).startswith(b"HTTP/1.1 431 ")
        # Each worker's log lines name it: all workers write to the supervisor's stderr.
        assert {event.get("worker") for event in _supervisor_events(gateway, "signals: listening")} == {0, 1}
        # A 2025-11-25 session opened on one worker is served by the others: the supervisor gave
        # them one sealing key, since this config names none.
        session = open_legacy_session(gateway.url, key)
        served_by: set[str] = set()
        for index in range(40):
            call = {"name": "sink__echo", "arguments": {"text": f"legacy-{index}"}}
            request = {"jsonrpc": "2.0", "id": index, "method": "tools/call", "params": call}
            response = httpx.post(gateway.url, headers=session, json=request)
            assert response.status_code == 200 and f"legacy-{index}" in response.text, response.text
            served_by.add(response.headers["x-gateway-worker"])
            if served_by == {"0", "1"}:
                break
        assert served_by == {"0", "1"}

        results = anyio.run(_many_clients, gateway.url, key, 8, 10)
        assert sorted(results) == sorted(f"{c}-{i}" for c in range(8) for i in range(10))

        # Both workers served calls, each into its own audit chain, and the log verifies.
        searched = gateway.cli("audit", "search", "--json", "--limit", "500", "--tool", "sink__echo")
        replicas = {json.loads(line)["replica"] for line in searched.stdout.splitlines()}
        assert replicas == {"gw-w0", "gw-w1"}
        assert json.loads(gateway.cli("audit", "verify", "--json").stdout)["ok"] is True

        # A killed worker is restarted in its slot and serves again.
        started = {event["worker"]: event["pid"] for event in _supervisor_events(gateway, "worker started")}
        os.kill(started[0], signal.SIGKILL)
        wait_until(
            lambda: any(
                e["worker"] == 0 and e["pid"] != started[0] for e in _supervisor_events(gateway, "worker started")
            ),
            what="worker 0 to be restarted",
        )
        assert _supervisor_events(gateway, "worker exited; restarting")[0]["exit_status"] == -signal.SIGKILL
        _wait_all_ready(gateway, 2)
        # Its successor took the dead worker's audit lease at once, without being refused first.
        assert len(_supervisor_events(gateway, "worker exited; restarting")) == 1
        assert len(anyio.run(_many_clients, gateway.url, key, 4, 5)) == 20
        workers = {event["worker"]: event["pid"] for event in _supervisor_events(gateway, "worker started")}
        assert workers[0] != started[0] and workers[1] == started[1]

        # SIGTERM to the supervisor stops every worker, and it exits cleanly.
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(30) == 0
        assert not any(_alive(pid) for pid in workers.values())
    finally:
        gateway.stop()
    # The restarted worker kept its replica id, so its chain continues and still verifies.
    assert json.loads(gateway.cli("audit", "verify", "--json").stdout)["ok"] is True


def test_several_workers_on_sqlite_are_refused_naming_postgresql(tmp_path: Path) -> None:
    write_gateway_config(tmp_path, {"sink": stdio_connector()})
    result = run_cli("serve", "--config", str(tmp_path / "gateway.toml"), "--workers", "2", check=False)
    assert result.returncode == 1
    assert "--workers 2 needs PostgreSQL" in result.stderr


@pytest.mark.anyio
async def test_a_worker_that_keeps_dying_at_start_stops_the_supervisor() -> None:
    policy = RestartPolicy(initial_backoff=0.01, max_backoff=0.05, max_quick_deaths=3)
    supervisor = Supervisor(2, lambda index: [sys.executable, "-c", f"raise SystemExit(7 + {index})"], policy)
    with anyio.fail_after(60):
        assert await supervisor.run() == 1


@pytest.mark.postgres
@pytest.mark.anyio
async def test_changes_seen_by_one_gateway_reach_another_through_signals(tmp_path: Path, postgres_url: str) -> None:
    gateways = []
    for name, reload_interval in (("gw-a", 3600), ("gw-b", 0.2)):
        write_gateway_config(
            tmp_path / name,
            {"sink": stdio_connector()},  # each gateway runs its own backend: only gw-b's changes
            database_url=postgres_url,
            extra=f'reload_interval = {reload_interval}\n[audit]\nreplica_id = "{name}"\n',
        )
        gateways.append(GatewayProcess(tmp_path / name, free_port()))
    listening_on, changed_on = gateways
    # Both read one policy directory, but gw-a would look at it only once an hour by itself.
    shutil.rmtree(tmp_path / "gw-a" / "policies")
    (tmp_path / "gw-a" / "policies").symlink_to(tmp_path / "gw-b" / "policies")
    try:
        for gateway in gateways:
            await anyio.to_thread.run_sync(gateway.start)
        key = await anyio.to_thread.run_sync(listening_on.create_key, "watcher")
        async with mcp_client(listening_on.url, key) as watcher, mcp_client(changed_on.url, key) as changer:
            async with watcher.listen(tools_list_changed=True) as subscription:
                await changer.call_tool("sink__add_tool", {"name": "fresh"})
                with anyio.fail_after(15):
                    async for _event in subscription:
                        break
            names = {tool.name for tool in (await changer.list_tools()).tools}
            assert "sink__fresh" in names

        policy = '@id("also-allowed")\npermit (principal, action, resource);\n'
        (tmp_path / "gw-b" / "policies" / "access" / "more.cedar").write_text(policy)
        await eventually(
            lambda: listening_on.readyz()["checks"]["policies"]["count"] == 2,
            timeout=15,
            what="gw-a to load the policies gw-b reloaded",
        )
    finally:
        for gateway in gateways:
            gateway.stop()


def test_each_worker_gets_a_replica_id_of_its_own(tmp_path: Path) -> None:
    """Configured: `<id>-w<index>`, the same for a restarted worker. Unset: unique to each worker process."""
    from gateway.config import load_config
    from gateway.workers import for_worker

    configured = load_config(
        write_gateway_config(tmp_path / "configured", {}, extra='\n[audit]\nreplica_id = "gw"\n'), with_connectors=False
    )
    assert [for_worker(configured, index).gateway.audit.replica_id for index in (0, 1, 0)] == [
        "gw-w0",
        "gw-w1",
        "gw-w0",
    ]
    unset = load_config(write_gateway_config(tmp_path / "unset", {}), with_connectors=False)
    ids = [for_worker(unset, index).gateway.audit.replica_id for index in (0, 1, 0)]
    assert len(set(ids)) == 3 and [replica_id[-3:] for replica_id in ids] == ["-w0", "-w1", "-w0"]
