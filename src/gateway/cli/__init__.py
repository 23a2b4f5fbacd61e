"""`gateway`: the command operators run, one module per command (`serve`, `keys`, `audit`, ...).

Each command module adds its flags and actions to the parser it is handed (`build(parser)`) and
sets `run(args) -> int` on each action; this module names the commands, dispatches, and turns
failures into exit statuses in one place. Each command loads the config once, does one job,
and exits non-zero with a one-line reason on failure; tables go to stdout, diagnostics to
stderr. Nothing else in the gateway imports this package: it sits on top of all of it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Sequence

from gateway import __version__
from gateway.cli import (
    agents,
    approvals,
    audit,
    config,
    connectors,
    idempotency,
    keys,
    migrate,
    policy,
    serve,
    stdio,
    tools,
    users,
    workflows,
)
from gateway.errors import GatewayError

__all__ = ["main"]

#: Every command, in the order `gateway --help` lists them: name, one-line help, and what builds it.
_COMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None]], ...] = (
    ("serve", "run the gateway over streamable HTTP", serve.build),
    ("stdio", "speak MCP on stdin/stdout for a local client", stdio.build),
    ("migrate", "create or upgrade the database schema", migrate.build),
    ("keys", "manage agents' API keys", keys.build),
    ("agents", "list agents, and suspend or resume one (the kill switch)", agents.build),
    ("users", "manage the people who approve held calls, and their keys", users.build),
    ("approvals", "list, show and decide the tool calls held for people's approval", approvals.build),
    ("workflows", "list workflows and show what agents did in one", workflows.build),
    ("idempotency", "list de-duplicated calls, and clear one whose outcome is unknown", idempotency.build),
    ("config", "describe the configuration files", config.build),
    ("policy", "validate, test and explain the Cedar access policies", policy.build),
    ("audit", "read, verify, export and prune the audit log", audit.build),
    ("tools", "inspect the aggregated catalog", tools.build),
    (
        "connectors",
        "tools for connector authors: preview an OpenAPI file, scaffold and check a Python connector",
        connectors.build,
    ),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except GatewayError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except (BrokenPipeError, BaseExceptionGroup) as exc:
        if not _only_broken_pipes(exc):
            raise
        return _stdout_closed()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway", description="Autonomy Gateway: one governed MCP endpoint in front of many backends."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, summary, build in _COMMANDS:
        build(commands.add_parser(name, help=summary))
    return parser


def _only_broken_pipes(error: BaseException) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return all(_only_broken_pipes(inner) for inner in error.exceptions)
    return isinstance(error, BrokenPipeError)


def _stdout_closed() -> int:
    """The reader of our output went away (`gateway audit search | head`): stop quietly.

    What is still buffered for stdout goes to /dev/null, so the interpreter's flush at exit does
    not fail a second time; the status is the one a command killed by SIGPIPE has, which is what
    a pipeline expects of a writer cut short.
    """
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 128 + signal.SIGPIPE
