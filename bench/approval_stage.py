"""What the hold stage costs a call that no approval policy holds, in one interleaved run.

Three gateways in front of their own echo backends, with the same 1,000 access policies, differ
only in `policies/approval/`:

- `none`: no approval policies (the stage reads one attribute and goes on);
- `scoped-out`: an approval policy whose scope names a role the bench agent lacks (the stage
  looks the call's slice up and finds no permit: no Cedar call);
- `evaluated`: an approval policy whose scope covers the call and whose condition is false for
  it (the stage evaluates Cedar, and the call runs unheld).

One client per gateway (and one straight to a backend) calls `echo` in rounds that rotate the
targets, so load on a shared machine hits all alike. Prints p50/p99 and each one's difference
from `none`.

    python bench/approval_stage.py [--mode auto|legacy] [--calls 1500] [--policies 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import anyio
from overhead import Setup, connect, percentile, sequential, start

APPROVAL_POLICIES = {
    "none": None,
    "scoped-out": (
        '@approvers("role:bench-managers")\n'
        'permit (principal in Role::"not-the-bench-agent", action == Action::"bench__echo", resource);\n'
    ),
    "evaluated": (
        '@approvers("role:bench-managers")\n'
        'permit (principal, action == Action::"bench__echo", resource) when { context.input.text == "never sent" };\n'
    ),
}


def start_variant(workdir: Path, approval: str | None, policies: int) -> Setup:
    if approval is not None:
        held = workdir / "policies" / "approval"
        held.mkdir(parents=True)
        (held / "bench.cedar").write_text(approval)
    return start("http", workdir, "", policies=policies)


async def measure(setups: dict[str, Setup], mode: str, calls: int, rounds: int) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {"direct": [], **{name: [] for name in setups}}
    first = next(iter(setups.values()))
    async with (
        connect(first.direct(), mode) as direct,
        connect(setups["none"].gateway_url, mode, setups["none"].key) as none,
        connect(setups["scoped-out"].gateway_url, mode, setups["scoped-out"].key) as scoped_out,
        connect(setups["evaluated"].gateway_url, mode, setups["evaluated"].key) as evaluated,
    ):
        targets = {
            "direct": (direct, "echo"),
            "none": (none, "bench__echo"),
            "scoped-out": (scoped_out, "bench__echo"),
            "evaluated": (evaluated, "bench__echo"),
        }
        for client, tool in targets.values():
            await sequential(client, tool, 50, [])
        names = list(targets)
        for round_number in range(rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                client, tool = targets[name]
                await sequential(client, tool, max(1, calls // rounds), latencies[name])
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("auto", "legacy"), default="auto", help="client protocol revision")
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--policies", type=int, default=1000)
    args = parser.parse_args()
    setups: dict[str, Setup] = {}
    with tempfile.TemporaryDirectory() as scratch:
        try:
            for name, approval in APPROVAL_POLICIES.items():
                workdir = Path(scratch) / name
                workdir.mkdir()
                setups[name] = start_variant(workdir, approval, args.policies)
            latencies = anyio.run(measure, setups, args.mode, args.calls, args.rounds)
        finally:
            for setup in setups.values():
                for process in reversed(setup.processes):
                    process.terminate()
                    process.wait(timeout=10)
    base = statistics.median(latencies["none"]) * 1000
    base_p99 = percentile(latencies["none"], 0.99) * 1000
    print(f"client={args.mode} calls={args.calls} policies={args.policies} cpus={os.cpu_count()}")
    print(f"{'':<11} {'p50 ms':>8} {'p99 ms':>8} {'vs none p50':>12} {'vs none p99':>12}")
    for name, values in latencies.items():
        p50, p99 = statistics.median(values) * 1000, percentile(values, 0.99) * 1000
        print(f"{name:<11} {p50:>8.2f} {p99:>8.2f} {p50 - base:>+12.3f} {p99 - base_p99:>+12.3f}")


if __name__ == "__main__":
    main()
