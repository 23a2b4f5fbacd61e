"""`gateway tools list`: the aggregated catalog, before any policy filters it, as the backends answer now.

`pending`, `diff` and `accept` (in `gateway.cli.tools_review`) review pinned tool definitions.

It connects to the backends the way `serve` does; a backend that is down, or whose listing went
beyond its bounds, shows as a row of its own rather than only as a log line.
"""

from __future__ import annotations

import argparse
import json

import anyio

from gateway.cli import tools_review
from gateway.cli.config_option import add_config_argument, load
from gateway.cli.output import print_catalog_problems, print_table


def build(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(title="tools", metavar="ACTION")
    listing = actions.add_parser("list", help="connect to every backend and show the exposed tools")
    add_config_argument(listing)
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    listing.set_defaults(run=_list)
    tools_review.build(actions)


def _list(args: argparse.Namespace) -> int:
    from gateway.runtime import GatewayRuntime

    config = load(args)
    runtime = GatewayRuntime(config)

    async def show() -> int:
        async with runtime.connected():
            rows = []
            for entry in runtime.catalog.tools():
                annotations = entry.annotations
                hints = [
                    name
                    for name, key in (
                        ("read_only", "readOnlyHint"),
                        ("destructive", "destructiveHint"),
                        ("idempotent", "idempotentHint"),
                        ("open_world", "openWorldHint"),
                    )
                    if annotations.get(key)
                ]
                health = runtime.connectors[entry.connector].health.state.value
                rows.append((entry.exposed, entry.connector, entry.original, ",".join(hints) or "-", health))
            unhealthy = [
                (f"(no tools: {c.health.detail})", name, "-", "-", c.health.state.value)
                for name, c in runtime.connectors.items()
                if c.health.state.value not in ("healthy", "degraded")
            ]
            unhealthy += [  # a degraded backend serves its tools; what it listed beyond the bounds is not
                (f"(left out: {problem})", name, "-", "-", c.health.state.value)
                for name, c in runtime.connectors.items()
                for problem in c.health.problems
            ]
            problems = runtime.catalog.problems()
        if args.json:
            for row in rows:
                print(json.dumps(dict(zip(("exposed", "connector", "original", "annotations", "health"), row))))
            for row in unhealthy:
                print(json.dumps({"connector": row[1], "health": row[4], "detail": row[0]}))
            for name, found in problems.items():
                print(json.dumps({"connector": name, "health": "degraded", "problems": list(found)}))
        else:
            with_problems = [("(problems: see below)", name, "-", "-", "degraded") for name in problems]
            print_table(
                ("EXPOSED NAME", "CONNECTOR", "ORIGINAL NAME", "ANNOTATIONS", "HEALTH"),
                rows + unhealthy + with_problems,
            )
        return 1 if print_catalog_problems(runtime.catalog) else 0

    return anyio.run(show)
