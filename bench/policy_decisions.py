"""Cost of one access decision as the policy set grows: 10, 100 and 1,000 policies.

A synthetic catalog of 200 tools (10 servers x 20 tools, typed arguments) and policy sets in
which a handful of policies can match the measured tool and the rest name other tools, the
way real sets grow. Prints p50/p99 per decision for `decide_call` (context building included),
for a call only unconditional policies can apply to (their scopes decide it), for a denied call
(whether the tool is concealed included, as the pipeline needs it), for
Cedar alone deciding the same request on the whole unsliced set (what slicing saves), and for
`visible_tools` over 50 tools, both for a principal seen for the first time (cold) and again
(warm, answers cached per loaded set).

    .venv/bin/python bench/policy_decisions.py [--iterations 2000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cedarpy

from gateway.calls import Call, Origin, Target
from gateway.catalog import Catalog
from gateway.connectors.base import Listing
from gateway.identity.principal import Principal
from gateway.policy import PolicyEngine
from gateway.policy.loader import parse_policies, policy_set, read_policy_files
from gateway.settings.connectors import McpStdioConnector

SERVERS = 10
TOOLS_PER_SERVER = 20
TARGET = "svc0__tool0"
#: Destructive, and called without reasoning: denied, yet listed (reasoning would allow it), so the agent is told why.
FORBIDDEN = "svc0__tool1"
#: Read-only, on another server: only an unconditional permit for the agent itself can apply.
UNCONDITIONAL = "svc1__tool0"
INPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "amount": {"type": "number"},
        "count": {"type": "integer"},
        "note": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["amount", "count"],
}


def synthetic_catalog() -> Catalog:
    settings = [
        McpStdioConnector(name=f"svc{s}", kind="mcp-stdio", command=("bench",), labels=("bench",))
        for s in range(SERVERS)
    ]
    catalog = Catalog(settings)
    for s in range(SERVERS):
        tools = tuple(
            {
                "name": f"tool{t}",
                "inputSchema": INPUT_SCHEMA,
                "annotations": {"readOnlyHint": t % 2 == 0, "destructiveHint": t % 4 == 1},
            }
            for t in range(TOOLS_PER_SERVER)
        )
        catalog.update(f"svc{s}", Listing(tools=tools))
    return catalog


def policies(count: int) -> str:
    """`count` policies: five can match TARGET, one (unconditional) UNCONDITIONAL; the others name other
    tools or other roles."""
    matching = [
        'permit (principal is Agent, action == Action::"list_tools", resource);',
        f'permit (principal in Role::"ops", action == Action::"{TARGET}", resource)\n'
        '  when { context.input.amount.lessThan(decimal("1000.0")) && context.input.count < 10 };',
        'forbid (principal, action in Action::"destructive", resource)\n'
        '  unless { context has reasoning && context.reasoning != "" };',
        'permit (principal in Role::"ops", action in Action::"server:svc0", resource)\n'
        "  when { context.time.hour >= 0 };",
        'forbid (principal in Role::"suspended", action in Action::"call_tool", resource);',
        f'permit (principal == Agent::"bench-agent", action == Action::"{UNCONDITIONAL}", resource);',
    ]
    others = [f"svc{s}__tool{t}" for s in range(SERVERS) for t in range(TOOLS_PER_SERVER)]
    others.remove(TARGET)
    # Half name another tool; half cover every tool (the `call_tool` group) for a role the caller
    # lacks, so only principal slicing keeps them out of the decision.
    rest = [
        f'permit (principal in Role::"team{i % 37}", action == Action::"{others[i % len(others)]}", resource)\n'
        f'  when {{ context.input.count < {i + 1} && context.input has note && context.input.note != "x{i}" }};'
        if i % 2 == 0
        else f'permit (principal in Role::"team{i % 37}", action in Action::"call_tool", resource)\n'
        f"  when {{ context.input has count && context.input.count < {i + 1} }};"
        for i in range(max(0, count - len(matching)))
    ]
    return "\n\n".join(matching[: min(count, len(matching))] + rest) + "\n"


def measure(function: Callable[[int], object], iterations: int) -> tuple[float, float]:
    samples = []
    for index in range(iterations):
        start = time.perf_counter()
        function(index)
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples) * 1e6, samples[int(len(samples) * 0.99) - 1] * 1e6


def bench(count: int, catalog: Catalog, iterations: int) -> str:
    """One row of the table: load time and decision costs with `count` policies."""
    target, forbidden = catalog.resolve_tool(TARGET), catalog.resolve_tool(FORBIDDEN)
    unconditional = catalog.resolve_tool(UNCONDITIONAL)
    listed = list(catalog.tools())[:50]
    ops = Principal(agent="bench-agent", roles=("ops",))
    origin = Origin(ops)
    arguments = {"amount": 250.75, "count": 3, "note": "monthly run", "tags": ["a", "b"]}
    allowed_call = Call(
        "tools/call", origin, TARGET, arguments, reasoning="scheduled", target=Target(target.connector, target.original)
    )
    unconditional_call = Call(
        "tools/call",
        origin,
        UNCONDITIONAL,
        arguments,
        target=Target(unconditional.connector, unconditional.original),
    )
    denied_call = Call(
        "tools/call", origin, FORBIDDEN, arguments, target=Target(forbidden.connector, forbidden.original)
    )
    with tempfile.TemporaryDirectory() as directory:
        access = Path(directory) / "access"
        access.mkdir()
        (access / "bench.cedar").write_text(policies(count))
        engine = PolicyEngine(Path(directory))
        decisions = engine.decisions
        start = time.perf_counter()
        engine.store.load(catalog)
        load_ms = (time.perf_counter() - start) * 1e3
        decision = decisions.decide_call(allowed_call, target)
        assert decision.allowed, decision.explain()
        assert decisions.decide_call(unconditional_call, unconditional).allowed
        denial = decisions.decide_call(denied_call, forbidden)
        assert not denial.allowed and not denial.concealed, denial.explain()
        assert [t.exposed for t in decisions.visible_tools(origin, listed)][:1] == [TARGET]

        whole = policy_set(parse_policies(read_policy_files(access)).policies)
        state = engine.store.current  # Cedar alone, on the same parsed entities, with the whole set
        assert state is not None
        entities = state.entities.for_principal(ops)
        request = {
            "principal": {"type": "Agent", "id": ops.agent},
            "action": {"type": "Action", "id": TARGET},
            "resource": {"type": "Tool", "id": TARGET},
            "context": {
                "input": {
                    "amount": {"__extn": {"fn": "decimal", "arg": "250.7500"}},
                    "count": 3,
                    "note": "monthly run",
                    "tags": ["a", "b"],
                },
                "reasoning": "scheduled",
                "session": {"id": "", "client": ""},
                "time": {"hour": 12, "weekday": 1, "date": "2026-11-30", "iso": "2026-11-30T12:00:00Z"},
                "request_id": "",
            },
        }
        assert cedarpy.is_authorized(request, whole, entities).allowed

        call = measure(lambda _: decisions.decide_call(allowed_call, target), iterations)
        scoped = measure(lambda _: decisions.decide_call(unconditional_call, unconditional), iterations)
        denied = measure(lambda _: decisions.decide_call(denied_call, forbidden), iterations)
        unsliced = measure(lambda _: cedarpy.is_authorized(request, whole, entities), iterations)
        cold = measure(
            lambda index: decisions.visible_tools(
                Origin(Principal(agent=f"agent-{count}-{index}", roles=("ops",))), listed
            ),
            max(50, iterations // 10),
        )
        warm = measure(lambda _: decisions.visible_tools(origin, listed), iterations)
    cells = [f"{count:>8}", f"{load_ms:>8.1f}"]
    cells += [f"{p50:>6.0f} / {p99:>6.0f}" for p50, p99 in (call, scoped, denied, unsliced, cold, warm)]
    return "  ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    catalog = synthetic_catalog()
    print(f"{len(list(catalog.tools()))} tools; {args.iterations} iterations; microseconds per call, p50 / p99")
    headers = (
        "policies",
        "load ms",
        "decide_call",
        "unconditional",
        "denied call",
        "Cedar unsliced",
        "visible_tools cold",
        "visible_tools warm",
    )
    print("  ".join(f"{h:>8}" if i < 2 else f"{h:>15}" for i, h in enumerate(headers)))
    for count in (10, 100, 1000):
        print(bench(count, catalog, args.iterations))


if __name__ == "__main__":
    main()
