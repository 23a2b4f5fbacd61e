"""Start-up time and memory: the gateway with N stdio backends, idle sessions, and a large result.

Measures, on this machine:
- seconds from `gateway serve` to `/readyz` 200 with N stdio backends (default 10);
- resident memory of the gateway process alone (its backends are separate processes), idle;
- how much 1,000 open idle sessions add (session-based clients that initialized and stay);
- the peak resident memory growth while a 10 MB tool result passes through, as a multiple of it.

    python bench/footprint.py [--backends 10] [--sessions 1000] [--result-mb 10] [--minimal-backends]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from overhead import free_port, wait_for

from harness import (
    KITCHEN_SINK,
    MCP_HEADERS,
    initialize_request,
    open_legacy_session,
)


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


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
    args = parser.parse_args()
    backend = Path(__file__).resolve().parent / "minimal_server.py" if args.minimal_backends else KITCHEN_SINK
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "connectors").mkdir()
        for index in range(args.backends):
            (work / "connectors" / f"b{index}.toml").write_text(
                f'kind = "mcp-stdio"\ncommand = ["{sys.executable}", "{backend}"]\n'
            )
        (work / "policies" / "access").mkdir(parents=True)
        (work / "policies" / "access" / "allow.cedar").write_text("permit (principal, action, resource);\n")
        config = work / "gateway.toml"
        config.write_text(
            f'[server]\nmax_body_bytes = 33554432\n[storage]\nurl = "sqlite:///{work / "gw.db"}"\n'
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
            wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, "readyz", timeout=120)
            ready_seconds = time.perf_counter() - started
            backends_up = sum(b["state"] == "healthy" for b in httpx.get(f"{url}/readyz").json()["backends"].values())
            idle = rss_kib(process.pid)
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
    print(f"backends: {args.backends} stdio ({backends_up} healthy at ready)")
    print(f"start to /readyz 200: {ready_seconds:.2f} s")
    print(f"idle gateway RSS: {idle / 1024:.1f} MiB (backends are separate processes)")
    print(f"{args.sessions} idle sessions add: {(with_sessions - idle) / 1024:.1f} MiB")
    print(
        f"{args.result_mb} MB text result ({relayed / 2**20:.1f} MiB as relayed): peak RSS growth "
        f"{growth / 2**20:.1f} MiB = {growth / size:.1f}x the text, {growth / relayed:.1f}x the relayed result"
    )


if __name__ == "__main__":
    main()
