"""The gateway's own cost per call, measured against the same backend called directly.

Starts the echo backend and a gateway in front of it, then calls `echo` through both, in one
run and interleaved (direct round, gateway round, alternating), so machine noise hits both
alike: first one client calling sequentially, then 16 concurrent clients. Prints p50/p99
latency, calls/s, and the gateway's overhead and throughput ratio.

    python bench/overhead.py [--transport http|stdio] [--mode auto|legacy] [--calls 2000] [--workers N]

`--workers N` runs the gateway as N worker processes on one port; several workers need
PostgreSQL, so with this option the gateway stores into a scratch database created on
$GATEWAY_BENCH_POSTGRES_URL (default postgresql://127.0.0.1:5432/test) and dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

HERE = Path(__file__).resolve().parent
ECHO = HERE / "echo_server.py"
#: The started gateway's `[server] ops_token`, which its /metrics (read for audit batch sizes) needs.
OPS_TOKEN = secrets.token_urlsafe(32)
OPS_HEADERS = {"Authorization": f"Bearer {OPS_TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Setup:
    gateway_url: str
    key: str
    direct: Callable[[], object]
    processes: list[subprocess.Popen[bytes]]


def write_policies(directory: Path, count: int) -> None:
    """`count` Cedar policies of which a handful can match `bench__echo`; 0 means one allow-all."""
    access = directory / "access"
    access.mkdir(parents=True, exist_ok=True)
    if count <= 0:
        (access / "allow.cedar").write_text("permit (principal, action, resource);\n")
        return
    lines = ['permit (principal == Agent::"bench", action == Action::"bench__echo", resource);']
    lines += ['permit (principal, action == Action::"list_tools", resource);']
    lines += [
        f'permit (principal in Role::"role-{i}", action == Action::"bench__echo", resource) '
        f'when {{ context.input.text == "x{i}" }};'
        if i % 100 == 0
        else f'permit (principal in Role::"role-{i}", action in Action::"call_tool", resource);'
        for i in range(count - 2)
    ]
    (access / "generated.cedar").write_text("\n".join(lines) + "\n")


POSTGRES_ADMIN_URL = os.environ.get("GATEWAY_BENCH_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")


def administer(statement: str) -> None:
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    anyio.run(run)


@contextmanager
def scratch_postgres() -> Iterator[str]:
    """A new PostgreSQL database for one run, dropped afterwards."""
    from sqlalchemy.engine import make_url

    name = f"gateway_bench_{uuid.uuid4().hex[:12]}"
    administer(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        administer(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start(
    transport: str,
    workdir: Path,
    extra_config: str,
    policies: int = 0,
    *,
    workers: int | None = None,
    database_url: str | None = None,
    ops_token: bool = True,
) -> Setup:
    """Backend (for HTTP) and gateway, ready; on any failure the processes started so far are stopped.

    `ops_token=False` leaves `[server] ops_token` out of the config, for checkouts older than it.
    """
    processes: list[subprocess.Popen[bytes]] = []
    try:
        return _start(processes, transport, workdir, extra_config, policies, workers, database_url, ops_token)
    except BaseException:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=10)
        raise


def _start(
    processes: list[subprocess.Popen[bytes]],
    transport: str,
    workdir: Path,
    extra_config: str,
    policies: int,
    workers: int | None,
    database_url: str | None,
    ops_token: bool,
) -> Setup:
    write_policies(workdir / "policies", policies)
    connectors = workdir / "connectors"
    connectors.mkdir()
    if transport == "http":
        backend_port = free_port()
        processes.append(
            subprocess.Popen(
                [sys.executable, str(ECHO), "--http", str(backend_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for(lambda: listening(backend_port), "backend")
        backend_url = f"http://127.0.0.1:{backend_port}/mcp"
        (connectors / "bench.toml").write_text(f'kind = "mcp-http"\nurl = "{backend_url}"\n')
        direct: Callable[[], object] = lambda: backend_url  # noqa: E731
    else:
        (connectors / "bench.toml").write_text(f'kind = "mcp-stdio"\ncommand = ["{sys.executable}", "{ECHO}"]\n')
        params = StdioServerParameters(command=sys.executable, args=[str(ECHO)])
        direct = lambda: params  # noqa: E731
    config = workdir / "gateway.toml"
    storage_url = database_url or f"sqlite:///{workdir / 'gw.db'}"
    config.write_text(
        (f'[server]\nops_token = "{OPS_TOKEN}"\n' if ops_token else "")
        + f'[storage]\nurl = "{storage_url}"\n[logging]\nlevel = "warning"\n'
        f'[policies]\ndir = "{workdir / "policies"}"\n{extra_config}\n'
    )
    gateway = [sys.executable, "-m", "gateway"]
    created = subprocess.run(
        [*gateway, "keys", "create", "--config", str(config), "--agent", "bench", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    key = json.loads(created.stdout)["key"]
    port = free_port()
    processes.append(
        subprocess.Popen(
            [*gateway, "serve", "--config", str(config), "--port", str(port)]
            + (["--workers", str(workers)] if workers else []),
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "gateway.log", "wb"),
        )
    )
    # Serving (200) comes before the backend has listed (status `starting`): wait for both.
    wait_for(lambda: settled(httpx.get(f"http://127.0.0.1:{port}/readyz")), "gateway and its backend")
    if workers and workers > 1:
        wait_for(lambda: workers_ready(port, workers), "every worker")
    return Setup(f"http://127.0.0.1:{port}/mcp", key, direct, processes)


def settled(readyz: httpx.Response) -> bool:
    """`/readyz` says the gateway serves and no backend is still making its first attempt."""
    return readyz.status_code == 200 and readyz.json().get("status") != "starting"


def workers_ready(port: int, workers: int) -> bool:
    """Whether /readyz answered 200 from every worker (new connections spread over them)."""
    seen = set()
    for _ in range(workers * 8):
        response = httpx.get(f"http://127.0.0.1:{port}/readyz")
        if settled(response):
            seen.add(response.headers.get("x-gateway-worker"))
    return len(seen) >= workers


@asynccontextmanager
async def connect(target: object, mode: str, key: str | None = None) -> AsyncIterator[Client]:
    if isinstance(target, StdioServerParameters):
        async with Client(target, mode=mode) as client:
            yield client
        return
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with Client(streamable_http_client(str(target), http_client=http), mode=mode) as client:
            yield client


async def sequential(client: Client, name: str, calls: int, into: list[float]) -> None:
    for _ in range(calls):
        started = time.perf_counter()
        await client.call_tool(name, {"text": "ping"})
        into.append(time.perf_counter() - started)


async def concurrent(clients: list[Client], name: str, calls_each: int) -> float:
    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for client in clients:
            group.start_soon(sequential, client, name, calls_each, [])
    return len(clients) * calls_each / (time.perf_counter() - started)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cpu_seconds_by_role() -> dict[str, float]:
    """CPU time so far of the gateway's processes, the echo backends' and this client's (Linux /proc).

    With 16 clients on two cores, throughput is bounded by the CPU that every call costs all
    three; these say how it divides.
    """
    tick = os.sysconf("SC_CLK_TCK")
    totals = {"gateway": 0.0, "backend": 0.0, "client": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if int(entry.name) == os.getpid():
            totals["client"] += seconds
        elif b"echo_server.py" in command:
            totals["backend"] += seconds
        elif b" gateway serve" in command or b"-m gateway serve" in command:
            totals["gateway"] += seconds
    return totals


async def measure(setup: Setup, mode: str, calls: int, rounds: int, clients: int) -> dict[str, dict[str, float]]:
    direct_target = setup.direct()
    latencies: dict[str, list[float]] = {"direct": [], "gateway": []}
    throughput: dict[str, list[float]] = {"direct": [], "gateway": []}
    cpu = {"gateway": 0.0, "backend": 0.0, "client": 0.0}
    concurrent_calls = 0
    async with connect(direct_target, mode) as direct, connect(setup.gateway_url, mode, setup.key) as through:
        targets = {"direct": (direct, "echo"), "gateway": (through, "bench__echo")}
        for client, tool in targets.values():  # warm up both paths
            await sequential(client, tool, 50, [])
        per_round = max(1, calls // rounds)
        for round_number in range(rounds):
            order = ["direct", "gateway"] if round_number % 2 == 0 else ["gateway", "direct"]
            for name in order:
                client, tool = targets[name]
                await sequential(client, tool, per_round, latencies[name])
    # 16 clients, each with its own session; stdio direct is one backend process per session.
    for round_number in range(max(2, rounds // 2)):
        order = ["direct", "gateway"] if round_number % 2 == 0 else ["gateway", "direct"]
        for name in order:
            target, tool, key = (
                (direct_target, "echo", None) if name == "direct" else (setup.gateway_url, "bench__echo", setup.key)
            )
            async with many_clients(target, mode, key, clients) as many:
                await concurrent(many, tool, 10)  # warm-up
                each = max(10, calls // (clients * 2))
                before = cpu_seconds_by_role()
                throughput[name].append(await concurrent(many, tool, each))
                if name == "gateway":
                    after = cpu_seconds_by_role()
                    for role in cpu:
                        cpu[role] += after[role] - before[role]
                    concurrent_calls += each * clients
    cpu_per_call = {role: seconds / concurrent_calls * 1e6 for role, seconds in cpu.items()}
    return {
        name: {
            "p50_ms": statistics.median(latencies[name]) * 1000,
            "p99_ms": percentile(latencies[name], 0.99) * 1000,
            "calls_per_s_1": len(latencies[name]) / sum(latencies[name]),
            "calls_per_s_16": statistics.median(throughput[name]),
        }
        for name in latencies
    } | {"cpu_us_per_call_16": cpu_per_call}


@asynccontextmanager
async def many_clients(target: object, mode: str, key: str | None, count: int) -> AsyncIterator[list[Client]]:
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(connect(target, mode, key)) for _ in range(count)]


def audit_batch_sizes(gateway_url: str) -> tuple[float, float] | None:
    """(commits, mean entries per commit) from the gateway's own /metrics histogram."""
    metrics = httpx.get(gateway_url.removesuffix("/mcp") + "/metrics", headers=OPS_HEADERS, timeout=10)
    text = metrics.raise_for_status().text
    count = total = 0.0
    for line in text.splitlines():
        if line.startswith("gateway_audit_batch_size_count"):
            count += float(line.rsplit(" ", 1)[1])
        elif line.startswith("gateway_audit_batch_size_sum"):
            total += float(line.rsplit(" ", 1)[1])
    return (count, total / count) if count else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=["http", "stdio"], default="http")
    parser.add_argument("--mode", choices=["auto", "legacy"], default="auto", help="client protocol revision")
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per path")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--config-extra", default="", help="extra gateway.toml text")
    parser.add_argument("--policies", type=int, default=0, help="generate N Cedar policies (0: one allow-all)")
    parser.add_argument(
        "--workers", type=int, help="gateway worker processes (stores into a scratch PostgreSQL database)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        database_url = stack.enter_context(scratch_postgres()) if args.workers else None
        setup = start(
            args.transport, Path(tmp), args.config_extra, args.policies, workers=args.workers, database_url=database_url
        )
        try:
            results = anyio.run(measure, setup, args.mode, args.calls, args.rounds, args.clients)
            batches = audit_batch_sizes(setup.gateway_url)
        finally:
            for process in setup.processes:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
    cpu = results.pop("cpu_us_per_call_16")
    direct, gateway = results["direct"], results["gateway"]
    storage = f" workers={args.workers} storage=postgresql" if args.workers else ""
    print(
        f"transport={args.transport} client={args.mode} calls={args.calls} clients={args.clients} cpus={os.cpu_count()}"
        + storage
    )
    print(f"{'':10}{'p50 ms':>10}{'p99 ms':>10}{'calls/s (1)':>14}{'calls/s (16)':>14}")
    for name, row in results.items():
        print(
            f"{name:10}{row['p50_ms']:10.2f}{row['p99_ms']:10.2f}"
            f"{row['calls_per_s_1']:14.0f}{row['calls_per_s_16']:14.0f}"
        )
    if batches:
        print(f"audit group commits: {batches[0]:.0f} batches, {batches[1]:.2f} entries per commit on average")
    print(
        f"CPU per call through the gateway with {args.clients} clients: gateway {cpu['gateway']:.0f} us, "
        f"backend {cpu['backend']:.0f} us, client {cpu['client']:.0f} us"
    )
    p50 = gateway["p50_ms"] - direct["p50_ms"]
    p99 = gateway["p99_ms"] - direct["p99_ms"]
    print(
        f"overhead: p50 +{p50:.2f} ms, p99 +{p99:.2f} ms;"
        f" throughput ratio with {args.clients} clients {gateway['calls_per_s_16'] / direct['calls_per_s_16']:.2f}x"
    )


if __name__ == "__main__":
    main()
