"""What counting calls for `context.rate` costs a call, in one interleaved in-process run.

Decides `finance__pay_invoice` for the quick start's policies three ways, round after round in
rotating order so machine noise hits all alike:

- `uncounted`: the access decision alone, the call not counted (the gateway before rates);
- `counted`: the call counted first (`RateCounter.count` among `--agents` agents of `--tools`
  tools each, the call rebuilt with its counts) and then decided: what every call pays;
- `rate-policy`: the same, with one more policy, which reads `context.rate` (so the counts are
  also written into the Cedar request and evaluated) and never denies.

- `input-policy`: like `rate-policy`, the extra policy reading an argument instead: what any
  policy with a condition on the context costs, for comparison.

Prints p50/p99 in microseconds and each one's difference from `uncounted`, and then what one
sync takes on a SQLite file (writing 100 and 10,000 changed tracks, and reading them), off the
hot path.

    python bench/rate_stage.py [--calls 20000] [--rounds 20] [--agents 1000] [--tools 10]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from gateway.calls import Call, Origin, Target
from gateway.coordination.rate_sync import RateSync
from gateway.coordination.rates import RateCounter
from gateway.identity.principal import Principal
from gateway.policy import PolicyEngine
from gateway.policy.cases import catalog_from_definitions
from gateway.storage.database import Database

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"


#: A policy that reads `context.rate` and never matches here, so every call is allowed (a deny
#: would also time the listing check a denial makes, which has nothing to do with rates).
RATE_POLICY = (
    '@id("bench-burst")\n'
    'forbid (principal, action == Action::"finance__pay_invoice", resource) '
    "when { context.rate.tool_minute > 1000000000 };\n"
)
#: The same policy reading an argument instead: what any policy with a condition on the context costs.
INPUT_POLICY = (
    '@id("bench-input")\n'
    'forbid (principal, action == Action::"finance__pay_invoice", resource) '
    'when { context.input.invoice_id == "never sent" };\n'
)


def engine_for(directory: Path, *, extra: str | None) -> PolicyEngine:
    """The quick start's access policies without its own rate policy, and `extra` when given."""
    shutil.copytree(POLICIES / "access", directory / "access")
    text = (directory / "access" / "quickstart.cedar").read_text().split('@id("payments-burst")')[0]
    (directory / "access" / "quickstart.cedar").write_text(text)
    if extra is not None:
        (directory / "access" / "bench.cedar").write_text(extra)
    return PolicyEngine(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--tools", type=int, default=10)
    args = parser.parse_args()
    catalog = catalog_from_definitions(POLICIES / "tests" / "catalog.json")
    tool = catalog.resolve_tool("finance__pay_invoice")
    principal = Principal(agent="finance-assistant", roles=("finance",))
    call = Call(
        "tools/call",
        Origin(principal, request_id=1),
        tool.exposed,
        {"invoice_id": "INV-2008", "amount": 980.0},
        target=Target(tool.connector, tool.original),
    )
    counter = RateCounter()
    others = [(f"agent-{a}", f"tool-{t}") for a in range(args.agents) for t in range(args.tools)]
    for agent, other_tool in others:  # a counter already holding many agents' tracks
        counter.count(agent, other_tool)
    with tempfile.TemporaryDirectory() as scratch:
        plain = engine_for(Path(scratch) / "plain", extra=None)
        burst = engine_for(Path(scratch) / "burst", extra=RATE_POLICY)
        argument = engine_for(Path(scratch) / "argument", extra=INPUT_POLICY)
        for engine in (plain, burst, argument):
            engine.store.load(catalog)
        assert plain.store.status.policy_count + 1 == burst.store.status.policy_count

        def uncounted() -> None:
            assert plain.decisions.decide_call(call, tool).allowed

        def counted() -> None:
            rated = call.counted(counter.count(principal.agent, tool.exposed))
            assert plain.decisions.decide_call(rated, tool).allowed

        def rate_policy() -> None:
            rated = call.counted(counter.count(principal.agent, tool.exposed))
            assert burst.decisions.decide_call(rated, tool).allowed

        def input_policy() -> None:
            rated = call.counted(counter.count(principal.agent, tool.exposed))
            assert argument.decisions.decide_call(rated, tool).allowed

        variants: dict[str, Callable[[], None]] = {
            "uncounted": uncounted,
            "counted": counted,
            "rate-policy": rate_policy,
            "input-policy": input_policy,
        }
        latencies: dict[str, list[float]] = {name: [] for name in variants}
        for function in variants.values():
            for _ in range(200):
                function()
        names = list(variants)
        per_round = max(1, args.calls // args.rounds)
        for round_number in range(args.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                function, into = variants[name], latencies[name]
                for _ in range(per_round):
                    started = time.perf_counter()
                    function()
                    into.append(time.perf_counter() - started)
        syncs = {tracks: anyio.run(one_sync, Path(scratch) / f"sync-{tracks}", tracks) for tracks in (100, 10000)}
    base = statistics.median(latencies["uncounted"]) * 1e6
    base_p99 = percentile(latencies["uncounted"], 0.99) * 1e6
    print(f"calls={args.calls} agents={args.agents} tools/agent={args.tools}")
    print(f"{'':<12} {'p50 us':>8} {'p99 us':>8} {'vs uncounted p50':>17} {'p99':>8}")
    for name, values in latencies.items():
        p50, p99 = statistics.median(values) * 1e6, percentile(values, 0.99) * 1e6
        print(f"{name:<12} {p50:>8.1f} {p99:>8.1f} {p50 - base:>+17.1f} {p99 - base_p99:>+8.1f}")
    for tracks, (write_ms, read_ms) in syncs.items():
        print(f"sync of {tracks} changed tracks on SQLite (off the hot path): write {write_ms:.1f} ms, ", end="")
        print(f"read {read_ms:.1f} ms")


async def one_sync(directory: Path, tracks: int) -> tuple[float, float]:
    """Milliseconds one process takes to write `tracks` changed tracks, and another to read them."""
    await anyio.Path(directory).mkdir()
    database = Database(f"sqlite+aiosqlite:///{directory / 'rates.db'}")
    await database.migrate()
    try:
        counter = RateCounter()
        for track in range(tracks):
            counter.count(f"agent-{track // 10}", f"tool-{track % 10}")
        sync = RateSync(database, counter, replica="bench", interval=1)
        reader = RateSync(database, RateCounter(), replica="reader", interval=1)
        await reader.read()  # connections opened, nothing to read yet: what follows is the steady state
        started = time.perf_counter()
        await sync.write()
        written = time.perf_counter()
        await reader.read()
        return (written - started) * 1000, (time.perf_counter() - written) * 1000
    finally:
        await database.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


if __name__ == "__main__":
    random.seed(1)
    main()
