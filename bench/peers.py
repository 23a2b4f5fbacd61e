"""Our gateway next to other Python MCP gateways, all in front of the same echo backend.

Starts the echo backend, our gateway (with Cedar policies loaded) and the peers below in
front of it, and calls `echo` through each of them and directly, in one run and interleaved
(the order rotates every round), so machine noise hits every target alike. For each scenario
(backend transport x client protocol revision) it prints p50/p99 of sequential calls, calls/s
with one client and with 16 concurrent clients, and each target's overhead against calling
the backend directly. A peer that refuses a scenario is reported with its error, and the run
goes on; a peer that cannot serve a scenario at all is reported as n/a.

Each peer is installed at a pinned version in its own virtualenv under bench/.cache/peers/,
on first use, so its dependencies never mix with ours.

    python bench/peers.py [--calls 1000] [--rounds 10] [--clients 16] [--policies 1000]
                          [--only gateway,fastmcp] [--scenarios http,stdio/2026-07-28]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from unittest.mock import patch

import anyio
import overhead
from mcp import Client, StdioServerParameters
from overhead import HERE, concurrent, connect, free_port, listening, percentile, sequential, start

CACHE = HERE / ".cache" / "peers"
#: Client protocol revision -> the `mode` the mcp client is opened with to ask for it.
REVISIONS = {"2025-11-25": "legacy", "2026-07-28": "auto"}
TRANSPORTS = ("http", "stdio")
TARGETS = ("direct", "gateway", "mcp-proxy", "fastmcp")
#: Calls each fresh connection makes before it is timed (imports, caches, first-call paths).
WARMUP_CALLS = 20
PROBE_SECONDS = 30
READY_SECONDS = 60
INSTALL_SECONDS = 900
STOP_SECONDS = 10


@dataclass(frozen=True)
class Peer:
    """A gateway or proxy from PyPI, pinned so runs on different days compare."""

    name: str
    package: str
    version: str

    @property
    def env(self) -> Path:
        return CACHE / f"{self.name}-{self.version}"

    def bin(self, program: str) -> Path:
        return self.env / "bin" / program


PEERS = {
    peer.name: peer
    for peer in (
        Peer("mcp-proxy", "mcp-proxy", "0.13.0"),
        Peer("fastmcp", "fastmcp", "4.2.3"),
    )
}


@dataclass(frozen=True)
class Target:
    """Something the client calls `echo` through: a URL (with its API key) or a stdio command."""

    name: str
    endpoint: str | StdioServerParameters
    tool: str
    key: str | None = None
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def died(self) -> str | None:
        """How the target's own process ended, if it did: then an error is not the protocol's."""
        if self.process is None or self.process.poll() is None:
            return None
        last = _last_line(self.log) if self.log is not None and self.log.exists() else "no log"
        return f"process exited with {self.process.returncode}: {last}"


@dataclass(frozen=True)
class Scenario:
    transport: str
    revision: str

    @property
    def name(self) -> str:
        return f"{self.transport}/{self.revision}"

    @property
    def mode(self) -> str:
        return REVISIONS[self.revision]


@dataclass
class Row:
    """One target in one scenario: its numbers, or why it has none."""

    status: str = "ok"
    protocol: str = ""
    latencies: list[float] = field(default_factory=list)
    throughput: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.latencies) and bool(self.throughput)


@dataclass(frozen=True)
class Options:
    calls: int
    rounds: int
    clients: int
    block_seconds: float


class Processes:
    """Every subprocess the run starts, so that all of them end on any exit path."""

    def __init__(self) -> None:
        self.groups: list[subprocess.Popen[bytes]] = []
        self.plain: list[subprocess.Popen[bytes]] = []

    def spawn_group(self, command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """A peer in its own session: its children (stdio backends) end with it."""
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=stderr, env=env, start_new_session=True
            )
        self.groups.append(process)
        return process

    def adopt(self, processes: list[subprocess.Popen[bytes]]) -> None:
        self.plain.extend(processes)

    def stop(self) -> None:
        for process in self.groups:
            _signal_group(process, signal.SIGTERM)
        for process in self.plain:
            if process.poll() is None:
                process.terminate()
        for process in [*self.groups, *self.plain]:
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                if process in self.groups:
                    _signal_group(process, signal.SIGKILL)
                else:
                    process.kill()
                process.wait(STOP_SECONDS)
        self.groups.clear()
        self.plain.clear()
        _reap_strays()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _reap_strays() -> None:
    """End children that a failed `overhead.start` left behind before it could return them."""
    strays = _own_children()
    for pid in strays:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while strays and time.monotonic() < deadline:
        strays = [pid for pid in strays if not _exited(pid)]
        time.sleep(0.05)
    for pid in strays:
        _signal(pid, signal.SIGKILL)
        _exited(pid)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _exited(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG) != (0, 0)
    except ChildProcessError:
        return True


def _own_children() -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == os.getpid() and fields[0] != "Z":
            children.append(int(entry.name))
    return children


# -- peers: installing and starting ------------------------------------------------------------


def ensure_env(peer: Peer) -> None:
    """Create the peer's virtualenv once and reuse it; a failed install leaves nothing behind."""
    marker = peer.env / ".installed"
    if marker.exists():
        return
    print(f"installing {peer.package}=={peer.version} into {peer.env} (first run only)", file=sys.stderr, flush=True)
    shutil.rmtree(peer.env, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(peer.env)], check=True, timeout=INSTALL_SECONDS)
        # pip's own lines are the progress; they go to stderr so stdout stays the report.
        pip = [str(peer.bin("python")), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
        spec = f"{peer.package}=={peer.version}"
        subprocess.run([*pip, spec], check=True, timeout=INSTALL_SECONDS, stdout=sys.stderr)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        shutil.rmtree(peer.env, ignore_errors=True)
        raise SystemExit(f"could not install {peer.package}=={peer.version}: {error}") from error
    marker.write_text(f"{peer.package}=={peer.version}\n")


def installed_version(peer: Peer, package: str) -> str:
    """A package's version inside a peer's virtualenv (which mcp SDK the peer really runs on)."""
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    found = subprocess.run([str(peer.bin("python")), "-c", code], capture_output=True, text=True, timeout=60)
    return found.stdout.strip() or "?"


def peer_command(peer: Peer, backend: str | StdioServerParameters, port: int, workdir: Path) -> list[str] | str:
    """The command serving `peer` over streamable HTTP in front of `backend`, or why there is none."""
    if peer.name == "mcp-proxy":
        if not isinstance(backend, StdioServerParameters):
            return "n/a: mcp-proxy serves HTTP only in front of a stdio command (given a URL it is a stdio server)"
        serve = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"]
        return [str(peer.bin("mcp-proxy")), *serve, "--", backend.command, *backend.args]
    if isinstance(backend, StdioServerParameters):
        config = workdir / "fastmcp-stdio.json"
        config.write_text(json.dumps({"mcpServers": {"bench": {"command": backend.command, "args": backend.args}}}))
        spec = str(config)
    else:
        spec = backend
    serve = ["--transport", "http", "--host", "127.0.0.1", "--port", str(port), "--no-banner", "--log-level", "WARNING"]
    return [str(peer.bin("fastmcp")), "run", spec, *serve]


def peer_environment() -> dict[str, str]:
    """Keep peers off the network: no update checks, no banners."""
    return {**os.environ, "FASTMCP_CHECK_FOR_UPDATES": "off", "FASTMCP_SHOW_SERVER_BANNER": "false"}


def start_peer(peer: Peer, backend: str | StdioServerParameters, workdir: Path, processes: Processes) -> Target | str:
    """Start a peer and wait until its port answers; a peer that dies or never listens is reported."""
    port = free_port()
    command = peer_command(peer, backend, port, workdir)
    if isinstance(command, str):
        return command
    log = workdir / f"{peer.name}.log"
    process = processes.spawn_group(command, log, peer_environment())
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"failed to start (exit {process.returncode}): {_last_line(log)}"
        if listening(port):
            return Target(peer.name, f"http://127.0.0.1:{port}/mcp", "echo", process=process, log=log)
        time.sleep(0.05)
    return f"failed to start: not listening after {READY_SECONDS} s"


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:160] if lines else "no output"


# -- our gateway's policies --------------------------------------------------------------------


def write_policies(directory: Path, count: int) -> None:
    """`count` policies of which a handful apply to the measured call; 0 means one allow-all.

    Written here rather than taken from overhead.py so that every generated policy names an
    action the echo catalog has: the gateway refuses a set naming an action group that is empty
    (such as `read_only` when no tool is read-only). Every hundredth of the rest names
    `bench__echo` for another role, the others `list_tools`, the way a real set grows.
    """
    access = directory / "access"
    access.mkdir(parents=True, exist_ok=True)
    if count <= 0:
        (access / "allow.cedar").write_text("permit (principal, action, resource);\n")
        return
    matching = [
        'permit (principal is Agent, action == Action::"list_tools", resource is Server);',
        'permit (principal == Agent::"bench", action == Action::"bench__echo", resource)\n'
        '  when { context.input.text == "ping" };',
        'forbid (principal, action == Action::"bench__echo", resource) when { context.input.text == "forbidden" };',
    ][:count]
    (access / "generated.cedar").write_text("\n".join(matching + _other_policies(count - len(matching))) + "\n")


def _other_policies(count: int) -> list[str]:
    return [
        f'permit (principal in Role::"role-{i}", action == Action::"bench__echo", resource)'
        f' when {{ context.input.text == "x{i}" }};'
        if i % 100 == 0
        else f'permit (principal in Role::"role-{i}", action == Action::"list_tools", resource == Server::"bench");'
        for i in range(count)
    ]


# -- one transport's targets -------------------------------------------------------------------


def start_targets(
    transport: str, names: list[str], workdir: Path, policies: int, processes: Processes
) -> dict[str, Target | str]:
    """The backend, our gateway and the chosen peers for one backend transport."""
    workdir.mkdir()
    try:
        with patch.object(overhead, "write_policies", write_policies):
            setup = start(transport, workdir, "", policies=policies)
    except (SystemExit, subprocess.CalledProcessError) as error:
        log = workdir / "gateway.log"
        output = getattr(error, "stderr", None) or (log.read_text(errors="replace") if log.exists() else "")
        raise SystemExit(f"our gateway did not start over {transport}: {error}\n{output[-2000:]}") from error
    processes.adopt(setup.processes)
    backend = setup.direct()
    assert isinstance(backend, str | StdioServerParameters)
    targets: dict[str, Target | str] = {"direct": Target("direct", backend, "echo")}
    if "gateway" in names:
        gateway = setup.processes[-1]  # `start` appends the gateway after the backend
        log = workdir / "gateway.log"
        targets["gateway"] = Target("gateway", setup.gateway_url, "bench__echo", setup.key, gateway, log)
    for name in names:
        if name in PEERS:
            targets[name] = start_peer(PEERS[name], backend, workdir, processes)
    return targets


# -- measuring ---------------------------------------------------------------------------------


def one_line(error: BaseException) -> str:
    """The innermost cause on one line: task groups wrap the real error in exception groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = next((line for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {text}"[:200] if text else type(error).__name__


async def probe(target: Target, mode: str) -> str:
    """Connect once and check one echo really comes back; returns the negotiated protocol revision."""
    with anyio.fail_after(PROBE_SECONDS):
        async with connect(target.endpoint, mode, target.key) as client:
            result = await client.call_tool(target.tool, {"text": "ping"})
            texts = [getattr(block, "text", None) for block in result.content]
            if result.is_error or "ping" not in texts:
                raise RuntimeError(f"unexpected answer: {texts}")
            return client.protocol_version


@asynccontextmanager
async def sessions(target: Target, mode: str, count: int) -> AsyncIterator[list[Client]]:
    """`count` clients, each with its own session (for stdio direct, its own backend process)."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(connect(target.endpoint, mode, target.key)) for _ in range(count)]


async def sequential_block(target: Target, mode: str, calls: int, row: Row) -> None:
    async with connect(target.endpoint, mode, target.key) as client:
        await sequential(client, target.tool, WARMUP_CALLS, [])
        await sequential(client, target.tool, calls, row.latencies)


async def concurrent_block(target: Target, mode: str, clients: int, calls_each: int, row: Row) -> None:
    async with sessions(target, mode, clients) as many:
        await concurrent(many, target.tool, 10)
        row.throughput.append(await concurrent(many, target.tool, calls_each))


def failure(target: Target, error: BaseException, word: str) -> str:
    """A one-line status; a target whose process died has failed, whatever the client saw."""
    died = target.died()
    return f"failed: {died}" if died else f"{word}: {one_line(error)}"


async def guarded(target: Target, row: Row, block: Callable[[], Awaitable[None]], seconds: float) -> None:
    """Run one timed block; a target that fails it is marked and left out of the later rounds."""
    try:
        with anyio.fail_after(seconds):
            await block()
    except Exception as error:
        row.status = failure(target, error, "failed")


def rotated(names: list[str], by: int) -> list[str]:
    """Each round starts with a different target, so no target always runs first or last."""
    shift = by % len(names) if names else 0
    return names[shift:] + names[:shift]


async def run_scenario(scenario: Scenario, targets: dict[str, Target | str], options: Options) -> dict[str, Row]:
    """Probe every target, then measure the ones that answered, round by round.

    Each timed block opens its own connections and closes them before the next target's block,
    so a target that breaks mid-run takes down only its own block, never another target's
    session.
    """
    rows = {name: Row(status=value) if isinstance(value, str) else Row() for name, value in targets.items()}
    live = [name for name, value in targets.items() if isinstance(value, Target)]
    for name in live:
        target = targets[name]
        assert isinstance(target, Target)
        try:
            rows[name].protocol = await probe(target, scenario.mode)
        except Exception as error:
            rows[name].status = failure(target, error, "refused")
    live = [name for name in live if rows[name].status == "ok"]
    per_round = max(1, options.calls // options.rounds)
    for round_number in range(options.rounds):
        _progress(scenario, f"sequential round {round_number + 1}/{options.rounds}")
        for name in rotated([n for n in live if rows[n].status == "ok"], round_number):
            target = targets[name]
            assert isinstance(target, Target)
            block = partial(sequential_block, target, scenario.mode, per_round, rows[name])
            await guarded(target, rows[name], block, options.block_seconds)
    calls_each = max(10, options.calls // (options.clients * 2))
    concurrent_rounds = max(2, options.rounds // 2)
    for round_number in range(concurrent_rounds):
        _progress(scenario, f"{options.clients} clients round {round_number + 1}/{concurrent_rounds}")
        for name in rotated([n for n in live if rows[n].status == "ok"], round_number):
            target = targets[name]
            assert isinstance(target, Target)
            block = partial(concurrent_block, target, scenario.mode, options.clients, calls_each, rows[name])
            await guarded(target, rows[name], block, options.block_seconds)
    return rows


def _progress(scenario: Scenario, what: str) -> None:
    print(f"  {scenario.name}: {what}", file=sys.stderr, flush=True)


async def run_transport(
    scenarios: list[Scenario], targets: dict[str, Target | str], options: Options
) -> dict[str, dict[str, Row]]:
    return {scenario.name: await run_scenario(scenario, targets, options) for scenario in scenarios}


# -- reporting ---------------------------------------------------------------------------------


def machine() -> str:
    """Cores, CPU model and memory: numbers from two machines do not compare without them."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = "? GiB"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    return f"{os.cpu_count()} cores, {model}, {memory} memory, Python {platform.python_version()}"


def header(clients: int) -> str:
    left = [("scenario", 17), ("target", 10), ("protocol", 11)]
    right = [("p50 ms", 8), ("p99 ms", 8), ("calls/s 1", 10), (f"calls/s {clients}", 11)]
    right += [("+p50 ms", 9), ("+p99 ms", 9), (f"x tput {clients}", 10)]
    return "".join(f"{t:<{w}}" for t, w in left) + "".join(f"{t:>{w}}" for t, w in right)


def format_row(scenario: str, name: str, row: Row, direct: Row) -> str:
    head = f"{scenario:<17}{name:<10}"
    if not row.ok:
        return f"{head}{row.status}"
    p50, p99 = _ms(statistics.median(row.latencies)), _ms(percentile(row.latencies, 0.99))
    per_s_1 = len(row.latencies) / sum(row.latencies)
    per_s_many = statistics.median(row.throughput)
    cells = f"{row.protocol:<11}{p50:8.2f}{p99:8.2f}{per_s_1:10.0f}{per_s_many:11.0f}"
    if name == "direct" or not direct.ok:
        return f"{head}{cells}{'-':>9}{'-':>9}{'-':>10}"
    base_p50, base_p99 = _ms(statistics.median(direct.latencies)), _ms(percentile(direct.latencies, 0.99))
    ratio = per_s_many / statistics.median(direct.throughput)
    return f"{head}{cells}{p50 - base_p50:+9.2f}{p99 - base_p99:+9.2f}{ratio:9.2f}x"


def _ms(seconds: float) -> float:
    return seconds * 1000


def report(results: dict[str, dict[str, Row]], options: Options, policies: int, peers: list[Peer]) -> None:
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    print(f"date: {now}")
    print(f"machine: {machine()}")
    versions = [f"client mcp {metadata.version('mcp')}", f"gateway {metadata.version('autonomy-gateway')}"]
    versions += [f"{p.name} {p.version} (mcp {installed_version(p, 'mcp')})" for p in peers]
    print("versions: " + ", ".join(versions))
    policy_set = "allow-all (1 policy)" if policies <= 0 else f"{policies} generated policies"
    print(
        f"calls={options.calls} rounds={options.rounds} clients={options.clients};"
        f" our gateway: API key auth, Cedar {policy_set}, audit to SQLite"
    )
    print(header(options.clients))
    for scenario, rows in results.items():
        direct = rows.get("direct", Row(status="missing"))
        for name in TARGETS:
            if name in rows:
                print(format_row(scenario, name, rows[name], direct))
    print(
        "protocol: the revision the client negotiated (a 2026-07-28 client falls back to 2025-11-25"
        " when the server offers nothing newer); +p50/+p99: added latency over direct;"
        f" x tput {options.clients}: calls/s with {options.clients} clients relative to direct"
    )


# -- command line ------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="sequential calls per target and scenario")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds the calls are split into")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients for the throughput rounds")
    parser.add_argument(
        "--only", default=",".join(TARGETS[1:]), help="targets besides direct (always measured): gateway,mcp-proxy,..."
    )
    parser.add_argument(
        "--scenarios",
        default="http,stdio",
        help="comma-separated transports (http, stdio), revisions (2025-11-25, 2026-07-28) or both (http/2026-07-28)",
    )
    parser.add_argument(
        "--policies", type=int, default=0, help="our gateway loads N generated Cedar policies (0: one allow-all)"
    )
    parser.add_argument("--block-seconds", type=float, default=300, help="time limit of one timed block")
    args = parser.parse_args()
    unknown = set(_split(args.only)) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if min(args.calls, args.rounds, args.clients) < 1:
        parser.error("--calls, --rounds and --clients must be positive")
    return args


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def chosen_scenarios(text: str) -> list[Scenario]:
    wanted = set(_split(text))
    every = [Scenario(transport, revision) for transport in TRANSPORTS for revision in REVISIONS]
    chosen = [s for s in every if wanted & {s.name, s.transport, s.revision}]
    if not chosen:
        raise SystemExit(f"no scenario matches {text!r}; scenarios are {', '.join(s.name for s in every)}")
    return chosen


def _terminated(signum: int, _frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the `finally` that stops every subprocess still runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminated)
    names = [name for name in TARGETS[1:] if name in _split(args.only)]
    scenarios = chosen_scenarios(args.scenarios)
    peers = [PEERS[name] for name in names if name in PEERS]
    for peer in peers:
        ensure_env(peer)
    options = Options(args.calls, args.rounds, args.clients, args.block_seconds)
    results: dict[str, dict[str, Row]] = {}
    processes = Processes()
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        try:
            for transport in TRANSPORTS:
                mine = [s for s in scenarios if s.transport == transport]
                if not mine:
                    continue
                print(f"starting targets over {transport}", file=sys.stderr, flush=True)
                try:
                    targets = start_targets(transport, names, Path(tmp) / transport, args.policies, processes)
                except SystemExit as error:
                    print(error, file=sys.stderr)
                    results.update(
                        {s.name: {"direct": Row(status=f"not run: {str(error).splitlines()[0]}")} for s in mine}
                    )
                else:
                    results.update(anyio.run(run_transport, mine, targets, options))
                processes.stop()
        finally:
            processes.stop()
    report(results, options, args.policies, peers)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
