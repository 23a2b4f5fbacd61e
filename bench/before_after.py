"""One change's effect: two checkouts of the gateway, side by side, in one interleaved run.

Each checkout's `src/` runs its own gateway (same config, same policies, each with its own echo
backend over HTTP); one client per target calls `echo` in rounds that rotate direct, before and
after, so load on a shared machine hits all three alike. Make the `before` checkout with
`git worktree add /tmp/before <commit>`.

    python bench/before_after.py --before /tmp/before --after . [--mode auto|legacy] [--calls 1500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import anyio
from overhead import Setup, connect, percentile, sequential, start


def start_checkout(checkout: Path, workdir: Path, policies: int) -> Setup:
    """`start` from overhead.py with the checkout's sources first on the gateway's import path."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(checkout.resolve() / "src")
    try:
        # No ops token: a checkout from before it refuses the key, and nothing here reads /metrics.
        return start("http", workdir, "", policies=policies, ops_token=False)
    finally:
        if previous is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous


async def measure(setups: dict[str, Setup], mode: str, calls: int, rounds: int) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {"direct": [], "before": [], "after": []}
    async with (
        connect(setups["before"].direct(), mode) as direct,
        connect(setups["before"].gateway_url, mode, setups["before"].key) as before,
        connect(setups["after"].gateway_url, mode, setups["after"].key) as after,
    ):
        targets = {"direct": (direct, "echo"), "before": (before, "bench__echo"), "after": (after, "bench__echo")}
        for client, tool in targets.values():
            await sequential(client, tool, 50, [])
        names = list(targets)
        for round_number in range(rounds):
            rotation = names[round_number % 3 :] + names[: round_number % 3]
            for name in rotation:
                client, tool = targets[name]
                await sequential(client, tool, max(1, calls // rounds), latencies[name])
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="checkout of the gateway before the change")
    parser.add_argument("--after", type=Path, default=Path("."), help="checkout after it (default: this one)")
    parser.add_argument("--mode", choices=("auto", "legacy"), default="auto", help="client protocol revision")
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--policies", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as before_dir, tempfile.TemporaryDirectory() as after_dir:
        setups: dict[str, Setup] = {}
        try:
            setups["before"] = start_checkout(args.before, Path(before_dir), args.policies)
            setups["after"] = start_checkout(args.after, Path(after_dir), args.policies)
            latencies = anyio.run(measure, setups, args.mode, args.calls, args.rounds)
        finally:
            for setup in setups.values():
                for process in reversed(setup.processes):
                    process.terminate()
                    process.wait(timeout=10)
    direct_p50 = statistics.median(latencies["direct"]) * 1000
    direct_p99 = percentile(latencies["direct"], 0.99) * 1000
    print(f"client={args.mode} calls={args.calls} policies={args.policies} cpus={os.cpu_count()}")
    print(f"{'':<8} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8}")
    for name, values in latencies.items():
        p50, p99 = statistics.median(values) * 1000, percentile(values, 0.99) * 1000
        print(f"{name:<8} {p50:>8.2f} {p99:>8.2f} {p50 - direct_p50:>+8.2f} {p99 - direct_p99:>+8.2f}")


if __name__ == "__main__":
    main()
