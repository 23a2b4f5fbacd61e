"""How far the gateway is from the floor of its own stack, in one interleaved run.

Four targets in front of (or being) the same HTTP echo backend, called with the official `mcp`
client: the backend directly; `byte_relay.py`, which copies bytes on uvicorn + aiohttp and
nothing else; the same relay waiting for one durable SQLite row per call before forwarding
(the least a write-ahead audit can cost); and the gateway with API-key auth, Cedar with
generated policies and its real audit. One client calls sequentially in rounds that rotate the
targets, then 16 clients do; the table shows what each adds over the backend alone, and the CPU
time the process in the middle spent per call with 16 clients.

    python bench/floor.py [--mode auto|legacy] [--calls 2000] [--policies 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import anyio
from overhead import (
    HERE,
    Setup,
    concurrent,
    connect,
    free_port,
    listening,
    many_clients,
    percentile,
    sequential,
    start,
    wait_for,
)

RELAY = HERE / "byte_relay.py"


def start_relay(backend_url: str, audit: Path | None) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    command = [sys.executable, str(RELAY), "--target", backend_url, "--port", str(port)]
    if audit is not None:
        command += ["--audit", str(audit)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: listening(port), "relay")
    return f"http://127.0.0.1:{port}/mcp", process


@dataclass(frozen=True)
class Target:
    url: str
    tool: str
    key: str | None = None
    pid: int | None = None  # the process between client and backend, whose CPU is its cost


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(targets: dict[str, Target], mode: str, calls: int, rounds: int, clients: int) -> dict[str, Row]:
    names = list(targets)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    throughput: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, float] = dict.fromkeys(names, 0.0)
    concurrent_calls: dict[str, int] = dict.fromkeys(names, 0)
    async with AsyncExitStack() as stack:
        opened = {
            name: await stack.enter_async_context(connect(target.url, mode, target.key))
            for name, target in targets.items()
        }
        for name in names:
            await sequential(opened[name], targets[name].tool, 50, [])
        per_round = max(1, calls // rounds)
        for round_number in range(rounds):
            for name in _rotated(names, round_number):
                await sequential(opened[name], targets[name].tool, per_round, latencies[name])
    each = max(10, calls // (clients * 2))
    for round_number in range(max(2, rounds // 3)):
        for name in _rotated(names, round_number):
            target = targets[name]
            async with many_clients(target.url, mode, target.key, clients) as many:
                await concurrent(many, target.tool, 10)
                before = cpu_seconds(target.pid) if target.pid else 0.0
                throughput[name].append(await concurrent(many, target.tool, each))
                cpu[name] += (cpu_seconds(target.pid) - before) if target.pid else 0.0
                concurrent_calls[name] += each * clients
    return {
        name: Row(
            p50=statistics.median(latencies[name]) * 1000,
            p99=percentile(latencies[name], 0.99) * 1000,
            calls_16=statistics.median(throughput[name]),
            cpu_ms=cpu[name] / concurrent_calls[name] * 1000 if targets[name].pid else None,
        )
        for name in names
    }


@dataclass(frozen=True)
class Row:
    p50: float
    p99: float
    calls_16: float
    cpu_ms: float | None


def _rotated(names: list[str], by: int) -> list[str]:
    """Each round starts with another target, so no target always follows the same one."""
    by %= len(names)
    return names[by:] + names[:by]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("auto", "legacy"), default="auto", help="client protocol revision")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--policies", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        setup: Setup | None = None
        relays: list[subprocess.Popen[bytes]] = []
        try:
            setup = start("http", Path(workdir), "", policies=args.policies)
            backend_url = str(setup.direct())
            relay_url, relay = start_relay(backend_url, None)
            relays.append(relay)
            audited_url, audited = start_relay(backend_url, Path(workdir) / "relay.db")
            relays.append(audited)
            targets = {
                "direct": Target(backend_url, "echo"),
                "byte relay": Target(relay_url, "echo", pid=relay.pid),
                "byte relay + durable row": Target(audited_url, "echo", pid=audited.pid),
                "gateway": Target(setup.gateway_url, "bench__echo", setup.key, pid=setup.processes[-1].pid),
            }
            results = anyio.run(measure, targets, args.mode, args.calls, args.rounds, args.clients)
        finally:
            for process in relays + (list(reversed(setup.processes)) if setup else []):
                process.terminate()
                process.wait(timeout=10)
    direct = results["direct"]
    print(
        f"client={args.mode} calls={args.calls} policies={args.policies} clients={args.clients} cpus={os.cpu_count()}"
    )
    print(
        f"{'target':<26} {'p50 ms':>7} {'p99 ms':>7} {'+p50 ms':>8} {'+p99 ms':>8} {'calls/s':>8} {'ratio':>6}"
        f" {'CPU ms/call':>12}"
    )
    for name, row in results.items():
        cpu = f"{row.cpu_ms:>12.2f}" if row.cpu_ms is not None else f"{'':>12}"
        print(
            f"{name:<26} {row.p50:>7.2f} {row.p99:>7.2f} {row.p50 - direct.p50:>+8.2f} "
            f"{row.p99 - direct.p99:>+8.2f} {row.calls_16:>8.0f} {row.calls_16 / direct.calls_16:>5.2f}x {cpu}"
        )


if __name__ == "__main__":
    main()
