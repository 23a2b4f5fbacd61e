"""Where the gateway's time goes on `tools/call`: a sampling profile of a running gateway.

Starts the same setup as `overhead.py` (echo backend, gateway, API key, Cedar policies), attaches
py-spy to the gateway process while one client calls `bench__echo` sequentially, and prints two
tables from the samples: time by area (the gateway's own modules, the MCP SDK, the HTTP server,
storage, the event loop) and the functions with the most time of their own. Sampling needs
`py-spy` (`pip install py-spy`) and permission to read the gateway's memory (root, or
`kernel.yama.ptrace_scope = 0`).

    python bench/profile_call.py [--transport http|stdio] [--mode auto|legacy] [--calls 3000]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio
from overhead import connect, start

#: First matching prefix of a frame's file path names its area; order matters (specific first).
AREAS = (
    ("gateway/front", "gateway: front (HTTP, sessions, tools/call)"),
    ("gateway/pipeline", "gateway: pipeline"),
    ("gateway/policy", "gateway: policy (Cedar)"),
    ("cedarpy", "gateway: policy (Cedar)"),
    ("gateway/audit", "gateway: audit"),
    ("gateway/connectors", "gateway: backend hop"),
    ("gateway/identity", "gateway: authentication"),
    ("gateway/telemetry", "gateway: telemetry"),
    ("opentelemetry", "gateway: telemetry"),
    ("gateway/", "gateway: other"),
    ("mcp_types", "MCP SDK"),
    ("mcp/", "MCP SDK"),
    ("pydantic", "pydantic (via the SDK)"),
    ("sqlalchemy", "storage (SQLAlchemy)"),
    ("aiosqlite", "storage (SQLite driver)"),
    ("sqlite3", "storage (SQLite driver)"),
    ("asyncpg", "storage (PostgreSQL driver)"),
    ("uvicorn", "HTTP server (uvicorn)"),
    ("h11", "HTTP server (uvicorn)"),
    ("httptools", "HTTP server (uvicorn)"),
    ("starlette", "HTTP server (Starlette)"),
    ("httpx", "HTTP client"),
    ("httpcore", "HTTP client"),
    ("anyio", "event loop (asyncio, anyio)"),
    ("asyncio", "event loop (asyncio, anyio)"),
    ("uvloop", "event loop (asyncio, anyio)"),
    ("selectors", "event loop (asyncio, anyio)"),
    ("json", "JSON"),
    ("threading", "threads (idle writer and pool threads)"),
)


def area_of(frame: str) -> str:
    for prefix, area in AREAS:
        if f"/{prefix}" in frame or f"({prefix}" in frame:
            return area
    return "other"


def summarise(raw: Path, top: int, *, inclusive: bool = False) -> None:
    """`raw` is py-spy's collapsed-stack output: `frame;frame;...;leaf count` per line."""
    by_area: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        leaf = frames[-1]
        if ("threading.py" in leaf and "wait" in leaf) or "._wait_for_work (" in leaf:
            continue  # idle threads waiting for work are not time any call spends
        total += count
        # The innermost frame that is not the event loop's own names where the time went.
        by_area[area_of(leaf)] += count
        if inclusive:
            for frame in dict.fromkeys(frames):  # a recursive frame counts once per sample
                by_function[frame] += count
        else:
            by_function[leaf] += count
    print(f"{total} samples of the gateway busy (time idle in the event loop is not sampled)")
    print(f"\n{'area':<48} {'share':>7}")
    for area, count in by_area.most_common():
        print(f"{area:<48} {count / total:>7.1%}")
    heading = "function (with its callees)" if inclusive else "function (own time)"
    print(f"\n{heading:<100} {'share':>7}")
    for function, count in by_function.most_common(top):
        print(f"{function[:100]:<100} {count / total:>7.1%}")


async def drive(url: str, key: str, mode: str, calls: int, clients: int = 1) -> None:
    async def one_client(count: int) -> None:
        async with connect(url, mode, key) as client:
            for _ in range(count):
                await client.call_tool("bench__echo", {"text": "ping"})

    async with anyio.create_task_group() as group:
        for _ in range(clients):
            group.start_soon(one_client, max(1, calls // clients))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=("http", "stdio"), default="http")
    parser.add_argument("--mode", choices=("auto", "legacy"), default="auto", help="client protocol revision")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--clients", type=int, default=1, help="concurrent clients, each calling sequentially")
    parser.add_argument(
        "--gil", action="store_true", help="sample only the thread holding the GIL: Python CPU, not I/O or fsync"
    )
    parser.add_argument("--inclusive", action="store_true", help="rank functions by time in them and their callees")
    parser.add_argument("--keep", type=Path, help="also write py-spy's collapsed stacks to this file")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        sys.exit("py-spy is not installed: pip install py-spy")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        setup = start(args.transport, workdir, "", policies=args.policies)
        try:
            gateway_pid = setup.processes[-1].pid
            anyio.run(drive, setup.gateway_url, setup.key, args.mode, 200)  # warm caches first
            raw = workdir / "profile.txt"
            recorder = subprocess.Popen(
                [py_spy, "record", "--pid", str(gateway_pid), "--rate", "1000", "--format", "raw",
                 "--output", str(raw), "--nonblocking", *(["--gil"] if args.gil else [])],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                anyio.run(drive, setup.gateway_url, setup.key, args.mode, args.calls, args.clients)
            finally:
                recorder.send_signal(2)
                recorder.wait(timeout=60)
            if args.keep is not None:
                shutil.copyfile(raw, args.keep)
            summarise(raw, args.top, inclusive=args.inclusive)
        finally:
            for process in reversed(setup.processes):
                process.terminate()
                process.wait(timeout=10)


if __name__ == "__main__":
    main()
