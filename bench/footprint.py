"""Start-up time and memory: the gateway with N stdio backends, idle sessions, and a large result.

Measures, on this machine:
- seconds from `gateway serve` to the first `tools/list` answered through it (the official `mcp`
  client, retrying until one succeeds: "serves after"), to `/readyz` 200, and to every backend's
  first connection attempt being over (`/readyz` no longer `starting`), with N stdio backends
  (default 10), and with `--hanging-backend` one more that never answers its handshake;
- resident memory of the gateway process alone (its backends are separate processes), idle;
- how much 1,000 open idle sessions add (session-based clients that initialized and stay);
- the peak resident memory growth while a 10 MB tool result passes through, as a multiple of it.

    python bench/footprint.py [--backends 10] [--sessions 1000] [--result-mb 10] [--minimal-backends]
                              [--hanging-backend]

`--sessions 0 --result-mb 0` measures start-up alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from overhead import free_port, wait_for

from harness import (
    KITCHEN_SINK,
    MCP_HEADERS,
    OPS_HEADERS,
    OPS_TOKEN,
    initialize_request,
    mcp_client,
    open_legacy_session,
)

#: A backend that never answers its handshake: it reads nothing and writes nothing.
HANGING_BACKEND = ("-c", "import time; time.sleep(3600)")


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def serves_after(url: str, key: str, started: float, timeout: float = 120) -> tuple[float, int]:
    """Seconds from `started` to the first `tools/list` answered through the gateway, and the tools it listed."""

    async def first_listing() -> tuple[float, int]:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            try:
                async with mcp_client(f"{url}/mcp", key) as client:
                    tools = (await client.list_tools()).tools
                return time.perf_counter() - started, len(tools)
            except Exception:  # not listening yet, or not serving yet: try again
                await anyio.sleep(0.01)
        raise SystemExit("timed out waiting for a tools/list answer")

    return anyio.run(first_listing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--result-mb", type=int, default=10)
    parser.add_argument(
        "--minimal-backends",
        action="store_true",
        help="stdlib-only backends (bench/minimal_server.py): the gateway's own start-up, not the SDK's imports",
    )
    parser.add_argument(
        "--hanging-backend",
        action="store_true",
        help="add a stdio backend that never answers its handshake (connect_timeout 10 s)",
    )
    args = parser.parse_args()
    backend = Path(__file__).resolve().parent / "minimal_server.py" if args.minimal_backends else KITCHEN_SINK
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "connectors").mkdir()
        for index in range(args.backends):
            (work / "connectors" / f"b{index}.toml").write_text(
                f'kind = "mcp-stdio"\ncommand = ["{sys.executable}", "{backend}"]\n'
            )
        if args.hanging_backend:
            command = ", ".join(json.dumps(part) for part in (sys.executable, *HANGING_BACKEND))
            (work / "connectors" / "hanging.toml").write_text(f'kind = "mcp-stdio"\ncommand = [{command}]\n')
        (work / "policies" / "access").mkdir(parents=True)
        (work / "policies" / "access" / "allow.cedar").write_text("permit (principal, action, resource);\n")
        config = work / "gateway.toml"
        config.write_text(
            f'[server]\nmax_body_bytes = 33554432\nops_token = "{OPS_TOKEN}"\n'
            f'[storage]\nurl = "sqlite:///{work / "gw.db"}"\n'
            f'[logging]\nlevel = "warning"\n[policies]\ndir = "{work / "policies"}"\n'
        )
        gateway = [sys.executable, "-m", "gateway"]
        subprocess.run([*gateway, "migrate", "--config", str(config)], check=True, capture_output=True)
        key = json.loads(
            subprocess.run(
                [*gateway, "keys", "create", "--config", str(config), "--agent", "bench", "--json"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )["key"]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        process = subprocess.Popen(
            [*gateway, "serve", "--config", str(config), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            serve_seconds, first_tools = serves_after(url, key, started)
            wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, "readyz", timeout=120)
            ready_seconds = time.perf_counter() - started
            wait_for(lambda: httpx.get(f"{url}/readyz").json()["status"] != "starting", "first attempts", timeout=120)
            settled_seconds = time.perf_counter() - started
            backends = httpx.get(f"{url}/readyz", headers=OPS_HEADERS).json()["backends"]
            backends_up = sum(backend["state"] == "healthy" for backend in backends.values())
            idle = rss_kib(process.pid)
            if not args.sessions and not args.result_mb:
                report_start(args, serve_seconds, first_tools, ready_seconds, settled_seconds, backends_up)
                return
            with httpx.Client(timeout=30) as client:
                for index in range(args.sessions):
                    opened = client.post(
                        f"{url}/mcp",
                        headers={**MCP_HEADERS, "Authorization": f"Bearer {key}"},
                        json=initialize_request(request_id=index + 1),
                    )
                    opened.raise_for_status()
            with_sessions = rss_kib(process.pid)
            session = open_legacy_session(f"{url}/mcp", key)
            size = args.result_mb * 1024 * 1024
            before_peak = rss_kib(process.pid, "VmHWM")
            before = rss_kib(process.pid)
            response = httpx.post(
                f"{url}/mcp",
                headers=session,
                json={
                    "jsonrpc": "2.0",
                    "id": 99,
                    "method": "tools/call",
                    "params": {"name": "b0__big", "arguments": {"size": size}},
                },
                timeout=120,
            )
            assert response.status_code == 200 and len(response.content) > size
            relayed = len(response.content)  # SDK backends send the text twice: content and structuredContent
            peak = rss_kib(process.pid, "VmHWM")
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
    growth = (max(peak, before_peak) - before) * 1024
    report_start(args, serve_seconds, first_tools, ready_seconds, settled_seconds, backends_up)
    print(f"idle gateway RSS: {idle / 1024:.1f} MiB (backends are separate processes)")
    print(f"{args.sessions} idle sessions add: {(with_sessions - idle) / 1024:.1f} MiB")
    print(
        f"{args.result_mb} MB text result ({relayed / 2**20:.1f} MiB as relayed): peak RSS growth "
        f"{growth / 2**20:.1f} MiB = {growth / size:.1f}x the text, {growth / relayed:.1f}x the relayed result"
    )


def report_start(
    args: argparse.Namespace,
    serve_seconds: float,
    first_tools: int,
    ready_seconds: float,
    settled_seconds: float,
    backends_up: int,
) -> None:
    hanging = " + 1 hanging in its handshake" if args.hanging_backend else ""
    print(f"backends: {args.backends} stdio{hanging} ({backends_up} healthy once their first attempts ended)")
    print(f"start to first tools/list answered (serves after): {serve_seconds:.2f} s ({first_tools} tools listed)")
    print(f"start to /readyz 200: {ready_seconds:.2f} s")
    print(f"start to every backend's first attempt over: {settled_seconds:.2f} s")


if __name__ == "__main__":
    main()
