"""What limits the gateway's throughput with N workers or replicas on one PostgreSQL.

The model is throughput ~= min(cores x per-core rate, database ceiling). One run measures its
terms, each on its own:

1. `one core`: one gateway process (1 worker, PostgreSQL storage) pinned to core 0, the HTTP
   echo backend, this client and the scratch database's PostgreSQL server processes pinned to
   the other core(s); 16 clients call `bench__echo`. Gives the gateway's CPU per call (ms of
   gateway-process CPU, summed over its threads), so one core serves about 1/X calls/s, and
   how busy its core was. In the same rounds it counts the gateway's audit commits (its own
   /metrics), the PostgreSQL CPU per call and every signal (LISTEN on each channel the code
   publishes on) the calls caused.
2. `audit ceiling`: no gateway; audit recorders (one per simulated worker) record calls as the
   gateway does (`record_call` durable, the outcome riding along with the next commit) from many
   concurrent callers, this process pinned to core 0 and the scratch database's server
   processes to the other: commits/s, events per commit, calls/s and PostgreSQL CPU per call.
3. `notify`: what one signal costs: sequential `pg_notify` on one connection (as a process's
   broker sends them) while another connection listens.
4. `workers`: the backend alone, a 1-worker and a 2-worker gateway, unpinned, called by 16
   clients in rotating rounds (the figure `overhead.py --workers N` gives, both in one run).

    python bench/scale_out.py [--calls 4000] [--audit-calls 4000] [--round-calls 1200] [--rounds 6] [--policies 1000]

Needs PostgreSQL at $GATEWAY_BENCH_POSTGRES_URL (default postgresql://127.0.0.1:5432/test) and
permission to set CPU affinity of the database's server processes (root), else those float; every
scratch database is dropped and every started process stopped, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import anyio
import asyncpg
from audit_write import one_call
from overhead import (
    Setup,
    audit_batch_sizes,
    concurrent,
    many_clients,
    scratch_postgres,
    start,
)

from gateway.approvals.wakeups import CHANNEL as APPROVAL_CHANNEL
from gateway.audit import AuditRecorder, Redactor
from gateway.coordination.locks import CHANNEL as RECORD_LOCK_CHANNEL
from gateway.coordination.suspensions import CHANNEL as SUSPENSION_CHANNEL
from gateway.pinning.keeper import SIGNAL as PINS_CHANNEL
from gateway.signals import _PG_PREFIX as SIGNAL_PREFIX
from gateway.storage import Database

#: Every channel the gateway publishes on: the modules' constants, plus the front's session
#: channels (`front/endpoint.py`) and the runtime's change notices (`runtime.py`), spelled there.
SIGNAL_CHANNELS = (
    APPROVAL_CHANNEL,
    RECORD_LOCK_CHANNEL,
    SUSPENSION_CHANNEL,
    PINS_CHANNEL,
    "cancel",
    "session_ended",
    "catalog_changed",
    "policies_reloaded",
)
CLIENTS = 16
TICK = os.sysconf("SC_CLK_TCK")
ALL_CPUS = frozenset(range(os.cpu_count() or 1))


# -- processes: CPU time and affinity, from /proc ---------------------------------------------


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of the processes (all their threads); a process gone meanwhile counts 0."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (the supervisor and its workers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def pin(pids: Iterable[int], cpus: Iterable[int]) -> int:
    """Every thread of the processes onto `cpus` (threads started later inherit it); how many pinned.

    A thread's affinity is its own, so each task in /proc/<pid>/task is set, not only the pid.
    """
    cpus, pinned = set(cpus), 0
    for pid in pids:
        try:
            tids = [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cpus)
                pinned += 1
            except (ProcessLookupError, PermissionError):
                continue
    return pinned


def gateway_pids(setup: Setup) -> list[int]:
    return process_tree(setup.processes[-1].pid)


def backend_pids(setup: Setup) -> list[int]:
    return [process.pid for process in setup.processes[:-1]]


async def server_pids(admin: asyncpg.Connection, database: str) -> list[int]:
    """The PostgreSQL server processes serving `database` (its connections; not the shared walwriter)."""
    rows = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    return [row["pid"] for row in rows]


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


def asyncpg_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@contextmanager
def running(setup: Setup) -> Iterator[Setup]:
    try:
        yield setup
    finally:
        for process in reversed(setup.processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@contextmanager
def affinity(cpus: Iterable[int]) -> Iterator[None]:
    """This process (every thread) on `cpus` for the block, back on every core afterwards."""
    pin([os.getpid()], cpus)
    try:
        yield
    finally:
        pin([os.getpid()], ALL_CPUS)


# -- 1. one gateway process on one core -------------------------------------------------------


@dataclass
class OneCore:
    calls_per_s: float
    gateway_ms_per_call: float
    gateway_core_busy: float
    others_ms_per_call: float
    other_core_busy: float
    postgres_us_per_call: float
    commits_per_call: float | None
    events_per_commit: float | None
    signals_per_call: float
    pinned_servers: bool


async def count_signals(url: str, counts: list[int]) -> asyncpg.Connection:
    listener = await asyncpg.connect(url)
    for channel in SIGNAL_CHANNELS:
        await listener.add_listener(SIGNAL_PREFIX + channel, lambda *_: counts.append(1))
    return listener


async def one_core(setup: Setup, database_url: str, mode: str, calls: int) -> OneCore:
    url, name = asyncpg_url(database_url), database_name(database_url)
    signals: list[int] = []
    listener = await count_signals(url, signals)
    admin = await asyncpg.connect(url)
    try:
        gateway, others = {0}, ALL_CPUS - {0} or {0}
        pin(gateway_pids(setup), gateway)
        pin([*backend_pids(setup), os.getpid()], others)
        async with many_clients(setup.gateway_url, mode, setup.key, CLIENTS) as clients:
            await concurrent(clients, "bench__echo", 20)  # warm up: connections, pools, caches
            servers = await server_pids(admin, name)
            pinned_servers = pin(servers, others) > 0
            batches_before = await anyio.to_thread.run_sync(audit_batch_sizes, setup.gateway_url)
            signals.clear()
            gateway_before, servers_before = cpu_seconds(gateway_pids(setup)), cpu_seconds(servers)
            others_before = cpu_seconds([*backend_pids(setup), os.getpid()])
            started = time.perf_counter()
            each = max(10, calls // CLIENTS)
            await concurrent(clients, "bench__echo", each)
            elapsed = time.perf_counter() - started
            gateway_cpu = cpu_seconds(gateway_pids(setup)) - gateway_before
            servers_cpu = cpu_seconds(servers) - servers_before
            others_cpu = cpu_seconds([*backend_pids(setup), os.getpid()]) - others_before
            batches_after = await anyio.to_thread.run_sync(audit_batch_sizes, setup.gateway_url)
        done = each * CLIENTS
        commits = events = None
        if batches_before and batches_after:
            count = batches_after[0] - batches_before[0]
            entries = batches_after[0] * batches_after[1] - batches_before[0] * batches_before[1]
            commits, events = count / done, entries / count if count else None
        return OneCore(
            calls_per_s=done / elapsed,
            gateway_ms_per_call=gateway_cpu / done * 1e3,
            gateway_core_busy=gateway_cpu / elapsed,
            others_ms_per_call=(others_cpu + servers_cpu) / done * 1e3,
            other_core_busy=(others_cpu + (servers_cpu if pinned_servers else 0.0)) / elapsed / len(others),
            postgres_us_per_call=servers_cpu / done * 1e6,
            commits_per_call=commits,
            events_per_commit=events,
            signals_per_call=len(signals) / done,
            pinned_servers=pinned_servers,
        )
    finally:
        await listener.close()
        await admin.close()


# -- 2. the audit's ceiling on one PostgreSQL --------------------------------------------------


@dataclass
class AuditRow:
    recorders: int
    callers: int
    calls_per_s: float
    commits_per_s: float
    events_per_commit: float
    record_call_p50_ms: float
    postgres_us_per_call: float
    recorder_us_per_call: float
    recorder_core_busy: float
    postgres_busy: float


async def audit_ceiling(database_url: str, calls: int, shapes: list[tuple[int, int]]) -> list[AuditRow]:
    """Recorders (one per simulated worker) driven by concurrent callers; this process on core 0."""
    url, name = asyncpg_url(database_url), database_name(database_url)
    database = Database(database_url)
    await database.migrate()
    admin = await asyncpg.connect(url)
    rows = []
    try:
        for recorders_count, callers in shapes:
            recorders = [
                AuditRecorder(database, Redactor(), replica_id=f"bench-{uuid.uuid4().hex[:8]}")
                for _ in range(recorders_count)
            ]
            for recorder in recorders:
                await recorder.start()
                for _ in range(10):
                    await one_call(recorder, [])
            servers = await server_pids(admin, name)
            pin(servers, ALL_CPUS - {0} or {0})
            latencies: list[float] = []
            per_caller = max(1, calls // (recorders_count * callers))

            async def caller(
                recorder: AuditRecorder, per_caller: int = per_caller, latencies: list[float] = latencies
            ) -> None:
                for _ in range(per_caller):
                    await one_call(recorder, latencies, wait=False)  # as the gateway records outcomes

            before = [recorder.stats() for recorder in recorders]
            own_before, servers_before = cpu_seconds([os.getpid()]), cpu_seconds(servers)
            started = time.perf_counter()
            await asyncio.gather(*(caller(recorder) for recorder in recorders for _ in range(callers)))
            for recorder in recorders:
                await recorder.close()  # commits the last outcomes
            elapsed = time.perf_counter() - started
            own_cpu, servers_cpu = cpu_seconds([os.getpid()]) - own_before, cpu_seconds(servers) - servers_before
            after = [recorder.stats() for recorder in recorders]
            done = per_caller * callers * recorders_count
            batches = sum(a.batches - b.batches for a, b in zip(after, before, strict=True))
            events = sum(a.events - b.events for a, b in zip(after, before, strict=True))
            rows.append(
                AuditRow(
                    recorders=recorders_count,
                    callers=callers,
                    calls_per_s=done / elapsed,
                    commits_per_s=batches / elapsed,
                    events_per_commit=events / max(batches, 1),
                    record_call_p50_ms=statistics.median(latencies) * 1e3,
                    postgres_us_per_call=servers_cpu / done * 1e6,
                    recorder_us_per_call=own_cpu / done * 1e6,
                    recorder_core_busy=own_cpu / elapsed,
                    postgres_busy=servers_cpu / elapsed,
                )
            )
    finally:
        await admin.close()
        await database.close()
    return rows


# -- 3. one signal ------------------------------------------------------------------------------


async def notify_cost(database_url: str, count: int) -> tuple[float, float, int]:
    """(p50 ms of one `pg_notify` round trip, notifies/s on one connection, how many the listener heard)."""
    url = asyncpg_url(database_url)
    received: list[int] = []
    listener = await asyncpg.connect(url)
    sender = await asyncpg.connect(url)
    try:
        await listener.add_listener(SIGNAL_PREFIX + RECORD_LOCK_CHANNEL, lambda *_: received.append(1))
        payload = '{"o": "bench", "p": {"key": "' + "0" * 64 + '"}}'
        times = []
        started = time.perf_counter()
        for _ in range(count):
            began = time.perf_counter()
            await sender.execute("SELECT pg_notify($1, $2)", SIGNAL_PREFIX + RECORD_LOCK_CHANNEL, payload)
            times.append(time.perf_counter() - began)
        elapsed = time.perf_counter() - started
        await listener.execute("SELECT 1")  # notifications sent before this answer have been delivered
        return statistics.median(times) * 1e3, count / elapsed, len(received)
    finally:
        await sender.close()
        await listener.close()


# -- 4. one worker against two ----------------------------------------------------------------


async def workers_rounds(
    targets: dict[str, tuple[str, str, str | None, list[int]]], mode: str, calls: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """Per target: (median calls/s over rounds, gateway ms of CPU per call, 0 for the backend alone)."""
    rates: dict[str, list[float]] = {name: [] for name in targets}
    cpu: dict[str, float] = dict.fromkeys(targets, 0.0)
    done: dict[str, int] = dict.fromkeys(targets, 0)
    names = list(targets)
    each = max(10, calls // CLIENTS)
    for round_number in range(rounds):
        order = names[round_number % len(names) :] + names[: round_number % len(names)]
        for name in order:
            url, tool, key, root = targets[name]
            async with many_clients(url, mode, key, CLIENTS) as clients:
                await concurrent(clients, tool, 5)
                pids = process_tree(root[0]) if root else []
                before = cpu_seconds(pids)
                rates[name].append(await concurrent(clients, tool, each))
                cpu[name] += cpu_seconds(pids) - before
                done[name] += each * CLIENTS
    return {name: (statistics.median(rates[name]), cpu[name] / done[name] * 1e3) for name in targets}


# -- the run -------------------------------------------------------------------------------------


def clean_up_on_signal(*stacks: ExitStack) -> None:
    """On Ctrl-C or SIGTERM stop every started process and drop every scratch database, then exit.

    The MCP client does not always let a cancellation end its calls (a Ctrl-C during a round of
    16 clients left the run going), so the handler does not wait for the event loop to unwind:
    it closes the stacks on a thread of its own (dropping a database runs an event loop, and this
    thread's is busy), terminates any child a start cut short left running, and exits with 128 +
    the signal's number.
    """

    def close() -> None:
        for stack in stacks:
            stack.close()
        for pid in process_tree(os.getpid())[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def handler(signum: int, frame: FrameType | None) -> None:
        closing = threading.Thread(target=close)
        closing.start()
        closing.join(60)
        os._exit(128 + signum)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def machine_line() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return (
        f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores ({model}), {memory_kb / 2**20:.0f} GiB, "
        f"Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["auto", "legacy"], default="auto", help="client protocol revision")
    parser.add_argument("--calls", type=int, default=4000, help="calls through the pinned gateway (part 1)")
    parser.add_argument("--round-calls", type=int, default=1200, help="calls per target and round of part 4")
    parser.add_argument("--audit-calls", type=int, default=4000, help="calls per row of the audit ceiling")
    parser.add_argument("--notifies", type=int, default=500, help="pg_notify calls timed")
    parser.add_argument("--rounds", type=int, default=6, help="rotating rounds of part 4")
    parser.add_argument("--policies", type=int, default=1000, help="generated Cedar policies (0: one allow-all)")
    args = parser.parse_args()
    print(f"machine: {machine_line()}")
    print(f"settings: client={args.mode} calls={args.calls} audit-calls={args.audit_calls} policies={args.policies}")

    with ExitStack() as outer, ExitStack() as stack:
        tmp = outer.enter_context(tempfile.TemporaryDirectory())
        clean_up_on_signal(stack, outer)
        # 1. One gateway process on core 0, everything it talks to on the other core.
        database_url = stack.enter_context(scratch_postgres())
        (Path(tmp) / "one").mkdir()
        setup = stack.enter_context(
            running(start("http", Path(tmp) / "one", "", args.policies, database_url=database_url))
        )
        with affinity(ALL_CPUS - {0} or {0}):
            core = anyio.run(one_core, setup, database_url, args.mode, args.calls)
        stack.close()
        print(
            f"\n1. one gateway process on core 0, {CLIENTS} clients, backend and PostgreSQL on the other core"
            + ("" if core.pinned_servers else " (PostgreSQL not pinned: no permission)")
        )
        print(
            f"   {core.calls_per_s:.0f} calls/s; gateway CPU {core.gateway_ms_per_call:.3f} ms per call "
            f"(one core: ~{1e3 / core.gateway_ms_per_call:.0f} calls/s); gateway core {core.gateway_core_busy:.0%} "
            f"busy, the other {core.other_core_busy:.0%}"
        )
        commits = (
            f"{core.commits_per_call:.2f} audit commits per call ({core.events_per_commit:.1f} events each)"
            if core.commits_per_call is not None and core.events_per_commit is not None
            else "audit commits not read"
        )
        print(f"   backend, clients and PostgreSQL on the other core: {core.others_ms_per_call:.3f} ms per call")
        print(
            f"   PostgreSQL CPU {core.postgres_us_per_call:.0f} us per call; {commits}; "
            f"signals {core.signals_per_call:.3f} per call"
        )

        # 2. The audit's ceiling: recorders against PostgreSQL, no gateway.
        database_url = stack.enter_context(scratch_postgres())
        shapes = [(1, 1), (1, 16), (1, 64), (2, 32), (4, 32)]
        with affinity({0}):
            audit = anyio.run(audit_ceiling, database_url, args.audit_calls, shapes)
            notify_ms, notifies_per_s, heard = anyio.run(notify_cost, database_url, args.notifies)
        stack.close()
        print("\n2. audit group commit on PostgreSQL (recorders in this process on core 0, PostgreSQL on the other)")
        print(
            f"   {'recorders':>9} {'callers':>8} {'calls/s':>8} {'commits/s':>10} {'events/commit':>14}"
            f" {'record_call p50 ms':>19} {'PG us/call':>11} {'recorder us/call':>17}"
            f" {'core 0 busy':>12} {'PG busy':>8}"
        )
        for row in audit:
            print(
                f"   {row.recorders:9d} {row.callers:8d} {row.calls_per_s:8.0f} {row.commits_per_s:10.0f}"
                f" {row.events_per_commit:14.1f} {row.record_call_p50_ms:19.2f} {row.postgres_us_per_call:11.0f}"
                f" {row.recorder_us_per_call:17.0f} {row.recorder_core_busy:12.0%} {row.postgres_busy:8.0%}"
            )
        best = max(audit, key=lambda row: row.calls_per_s)
        print(
            f"   audit ceiling measured: {best.calls_per_s:.0f} calls/s ({best.commits_per_s:.0f} commits/s x "
            f"{best.events_per_commit:.1f} events / 2 events per call); PostgreSQL CPU alone would allow "
            f"~{1e6 / min(row.postgres_us_per_call for row in audit):.0f} calls/s per PostgreSQL core"
        )
        print(
            f"\n3. one signal: pg_notify p50 {notify_ms:.3f} ms, {notifies_per_s:.0f}/s on one connection "
            f"(the listener heard {heard} of {args.notifies})"
        )

        # 4. One worker against two, unpinned, as overhead.py --workers N measures them.
        targets: dict[str, tuple[str, str, str | None, list[int]]] = {}
        for workers in (1, 2):
            url = stack.enter_context(scratch_postgres())
            (Path(tmp) / f"w{workers}").mkdir()
            setup = stack.enter_context(
                running(start("http", Path(tmp) / f"w{workers}", "", args.policies, workers=workers, database_url=url))
            )
            targets[f"{workers} worker{'s' if workers > 1 else ''}"] = (
                setup.gateway_url,
                "bench__echo",
                setup.key,
                [setup.processes[-1].pid],
            )
            if workers == 1:
                targets = {"backend alone": (str(setup.direct()), "echo", None, []), **targets}
        results = anyio.run(workers_rounds, targets, args.mode, args.round_calls, args.rounds)
        stack.close()
        print(f"\n4. {CLIENTS} clients, nothing pinned, {args.rounds} rotating rounds")
        direct_rate = results["backend alone"][0]
        for name, (rate, ms) in results.items():
            share = f"{rate / direct_rate:.2f}x the backend alone" if name != "backend alone" else ""
            gateway_cpu = f"gateway CPU {ms:.3f} ms per call" if ms else ""
            print(f"   {name:14} {rate:6.0f} calls/s  {share:28} {gateway_cpu}".rstrip())
        per_core = 1e3 / core.gateway_ms_per_call
        print(
            f"\nmodel: calls/s ~= min(cores x {per_core:.0f}, {best.calls_per_s:.0f} per PostgreSQL as measured here);"
            f" signals per call {core.signals_per_call:.3f}"
        )


if __name__ == "__main__":
    main()
