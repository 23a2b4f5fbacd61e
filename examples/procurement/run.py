"""Run the procurement example from start to end: the gateway, three agents, out of order, then in order.

    .venv/bin/python examples/procurement/run.py                 # run both, then stop the gateway
    .venv/bin/python examples/procurement/run.py --keep-running  # leave it up to look at the console

It creates the database and the agents' keys on the first run (kept in `.state/` beside this
file), starts `gateway serve` with `gateway.toml` in front of the three demo backends, and runs
the scripted agents as separate processes, each with its own key:

1. **Out of order**: the purchasing agent, handed a quote directly, orders at once. The gateway
   refuses: no compliance check has succeeded in this workflow. The ERP receives nothing.
2. **In order**, in a new workflow: the quotes agent chooses a quote, the compliance agent
   screens its vendor and leaves a note, the purchasing agent reads both from the workflow and
   orders. The ERP creates exactly one purchase order.

Each run ends with the workflow's timeline (`gateway workflows show`). The exit status is 0 when
both runs went as described, 1 otherwise (with what differed).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "gateway.toml"
STATE = HERE / ".state"
KEYS = STATE / "keys.json"
ORDERS = STATE / "erp-orders.json"
LOG = STATE / "gateway.log"
AGENTS = {
    "quotes": ("quotes-agent", "quotes_agent.py"),
    "compliance": ("compliance-agent", "compliance_agent.py"),
    "purchasing": ("purchasing-agent", "purchasing_agent.py"),
}
#: The console person who may look at the workflows (role `viewer`).
VIEWER = "auditor"
STARTUP_DEADLINE = 60.0
#: What the refusal must say for the out-of-order run to count as refused for the right reason.
ORDERING_REASON = "compliance__check_vendor must succeed in this workflow"


def gateway(*args: str, capture: bool = True) -> str:
    """Run one `gateway` command with this example's config; its output, or exit with its error."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--config", str(CONFIG)], capture_output=capture, text=True
    )
    if done.returncode != 0:
        sys.exit(f"gateway {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout or ""


def keys() -> dict[str, str]:
    """The agents' keys (and the console viewer's), created on the first run and kept in `.state/`."""
    if KEYS.exists():
        return dict(json.loads(KEYS.read_text()))
    made = {}
    for role, (agent, _) in AGENTS.items():
        created = gateway(
            "keys", "create", "--agent", agent, "--role", role, "--description", "procurement example", "--json"
        )
        made[role] = json.loads(created)["key"]
    made[VIEWER] = json.loads(gateway("users", "create", VIEWER, "--role", "viewer", "--json"))["key"]
    KEYS.write_text(json.dumps(made, indent=2))
    KEYS.chmod(0o600)
    return made


def start_gateway(port: int) -> subprocess.Popen[bytes]:
    """`gateway serve` on `port`, logging to `.state/gateway.log`; returns once it is ready."""
    log = LOG.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(CONFIG), "--port", str(port)],
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the gateway stopped at start ({process.returncode}); its log is {LOG}")
        try:
            # Serving, and done with the backends' first connection attempts: the agents then find their tools.
            readyz = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            if readyz.status_code == 200 and readyz.json()["status"] != "starting":
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.terminate()
    sys.exit(f"the gateway was not ready within {STARTUP_DEADLINE:.0f} s; its log is {LOG}")


def stop_gateway(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def agent(role: str, url: str, key: str, workflow: str, *extra: str) -> tuple[int, str]:
    """Run one agent as its own process; print and return its exit status and output."""
    name, script = AGENTS[role]
    print(f"\n── {name} ──", flush=True)
    done = subprocess.run(
        [sys.executable, str(HERE / script), "--url", url, "--workflow", workflow, *extra],
        env={**os.environ, "GATEWAY_KEY": key, "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        text=True,
        cwd=HERE,
    )
    output = done.stdout + done.stderr
    print(output.rstrip(), flush=True)
    return done.returncode, output


def orders() -> list[dict[str, Any]]:
    """The purchase orders the ERP holds (it keeps them in `.state/erp-orders.json`)."""
    return list(json.loads(ORDERS.read_text())["orders"]) if ORDERS.exists() else []


def timeline(workflow: str) -> None:
    print(f"\nThe workflow's timeline (gateway workflows show {workflow}):\n", flush=True)
    print(gateway("workflows", "show", workflow).rstrip(), flush=True)


def out_of_order(url: str, keys: dict[str, str], workflow: str) -> list[str]:
    """The purchasing agent orders before anyone checked the vendor: the gateway must refuse."""
    print(f"\n=== 1. Out of order: the purchasing agent orders first (workflow {workflow}) ===")
    before = len(orders())
    quote = f"Q-{secrets.token_hex(3).upper()}-V-100"
    status, output = agent(
        "purchasing", url, keys["purchasing"], workflow, "--quote-id", quote, "--vendor", "V-100", "--amount", "43240"
    )
    problems = []
    if status != 2 or ORDERING_REASON not in output:
        problems.append(f"the early purchase order was not refused for want of a compliance check (exit {status})")
    if len(orders()) != before:
        problems.append("the ERP created a purchase order although the gateway should have refused it")
    print(f"\nThe ERP holds {len(orders())} purchase order(s), as before: the refused call never reached it.")
    timeline(workflow)
    return problems


def in_order(url: str, keys: dict[str, str], workflow: str) -> list[str]:
    """Quotes, compliance, purchasing: each reads what the one before left in the workflow."""
    print(f"\n=== 2. In order: quotes, compliance, purchasing (workflow {workflow}) ===")
    before = orders()
    problems = []
    for role in ("quotes", "compliance", "purchasing"):
        status, _ = agent(role, url, keys[role], workflow)
        if status != 0:
            problems.append(f"the {role} agent did not finish its part (exit {status})")
            break
    created = orders()[len(before) :]
    if len(created) != 1:
        problems.append(f"the ERP created {len(created)} purchase orders in this run, not exactly one")
    for order in created:
        print("\nThe purchase order the ERP created:\n")
        for field, value in order.items():
            print(f"  {field:<11} {value}")
    timeline(workflow)
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the procurement example: out of order, then in order.")
    parser.add_argument("--port", type=int, default=8788, help="port for the gateway (default: 8788)")
    parser.add_argument(
        "--keep-running", action="store_true", help="leave the gateway running afterwards, to look at the console"
    )
    args = parser.parse_args()
    # Stopped from outside (a service manager, a test): stop the gateway too, as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    STATE.mkdir(exist_ok=True)
    gateway("migrate")
    agent_keys = keys()
    process = start_gateway(args.port)
    base = f"http://127.0.0.1:{args.port}"
    run = secrets.token_hex(3)
    problems: list[str] = []
    try:
        problems = out_of_order(f"{base}/mcp", agent_keys, f"purchase-{run}-out-of-order")
        problems += in_order(f"{base}/mcp", agent_keys, f"purchase-{run}-in-order")
        print()
        for problem in problems:
            print(f"NOT AS EXPECTED: {problem}")
        if not problems:
            print("Both runs went as expected: refused out of order, one purchase order in order.")
        if args.keep_running:
            print(
                f"\nThe gateway is still running. See the workflows in the console: {base}/ui/workflows\n"
                f"(sign in as {VIEWER} with {agent_keys[VIEWER]}). Stop it with Ctrl-C.",
                flush=True,
            )
            process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_gateway(process)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
