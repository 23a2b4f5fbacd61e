"""How one sequential `tools/call` divides its time inside the gateway: a timer on each stage.

Starts the `overhead.py` setup with timers installed into the gateway process only (see
`stage_hooks/sitecustomize.py`), warms up, then times `--calls` sequential calls and prints,
per stage, the p50 and mean in microseconds. Stages nest: the request with authentication
holds the request in the app, which holds the pipeline, which holds the policy decision, the
hold decision, the durable audit entry (which holds the recorder's batch, the wait for the writer thread and, on
SQLite, its transaction) and the backend hop (which holds the backend's own work). The timers
cost a few microseconds each; the figures are for dividing a call's time, not for tables of
overhead (use `overhead.py` for those). `--approval` gives the gateway the approval policies of
one of `approval_stage.py`'s gateways.

    python bench/stage_times.py [--transport http|stdio] [--mode auto|legacy] [--calls 2000]
                                [--approval none|scoped-out|evaluated]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

import anyio
from approval_stage import APPROVAL_POLICIES
from overhead import start
from profile_call import drive

HOOKS = Path(__file__).resolve().parent / "stage_hooks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=("http", "stdio"), default="http")
    parser.add_argument("--mode", choices=("auto", "legacy"), default="auto", help="client protocol revision")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument(
        "--approval",
        choices=tuple(APPROVAL_POLICIES),
        default="none",
        help="approval policies, as in approval_stage.py: none, one scoped away from the call, one evaluated and false",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        samples_path = workdir / "stages.json"
        approval = APPROVAL_POLICIES[args.approval]
        if approval is not None:
            (workdir / "policies" / "approval").mkdir(parents=True)
            (workdir / "policies" / "approval" / "bench.cedar").write_text(approval)
        # Inherited by every process `start` launches; the hooks act in `gateway serve` only.
        os.environ["GATEWAY_STAGE_TIMES"] = str(samples_path)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")]))
        setup = start(args.transport, workdir, "", policies=args.policies)
        try:
            gateway = setup.processes[-1]
            anyio.run(drive, setup.gateway_url, setup.key, args.mode, 200)
            os.kill(gateway.pid, signal.SIGUSR1)
            anyio.run(drive, setup.gateway_url, setup.key, args.mode, args.calls)
            os.kill(gateway.pid, signal.SIGUSR2)
            deadline = time.monotonic() + 30
            while not samples_path.exists():  # renamed into place once complete
                if time.monotonic() > deadline:
                    raise SystemExit("the gateway did not write its stage timings")
                time.sleep(0.05)
            stages: dict[str, list[float]] = json.loads(samples_path.read_text())
        finally:
            for process in reversed(setup.processes):
                process.terminate()
                process.wait(timeout=10)
    print(
        f"{args.calls} sequential calls, {args.transport} backend, {args.mode} client, "
        f"approval policies: {args.approval}; microseconds"
    )
    print(f"{'stage':34} {'calls':>7} {'p50':>9} {'mean':>9}")
    for stage, values in stages.items():
        p50, mean = statistics.median(values) * 1e6, statistics.fmean(values) * 1e6
        print(f"{stage:34} {len(values):>7} {p50:>9.0f} {mean:>9.0f}")


if __name__ == "__main__":
    main()
