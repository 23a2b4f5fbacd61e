"""`gateway connectors check NAME`: run the connector contract on a Python connector and report each check.

NAME is an entry point of `gateway.connectors` or `module:attribute`. Settings come from
`--settings` (JSON) or from the `settings` table of a connector file (`--connector-file`, with
its `${ENV}` references resolved), so the connector starts as the gateway would start it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.sdk.contract import Verdict


def build(actions: Any) -> None:
    check = actions.add_parser(
        "check",
        help="run the contract every Python connector must pass (schemas, errors, cancellation, health)",
        description="Run the connector contract on NAME (an entry point or module:attribute); exit 1 on a failure.",
    )
    check.add_argument("name", metavar="NAME", help="entry point name in gateway.connectors, or module:attribute")
    check.add_argument("--settings", default=None, help="the connector's settings as a JSON object")
    check.add_argument("--connector-file", type=Path, default=None, help="take settings and path from this file")
    check.add_argument("--path", type=Path, action="append", default=[], help="a directory to import from")
    check.add_argument(
        "--call",
        action="append",
        default=[],
        metavar="TOOL=JSON",
        help="a call to make and cancel, to check it stops promptly (name a slow, harmless one)",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object per check")
    check.set_defaults(run=_check)


def _check(args: argparse.Namespace) -> int:
    # Here, not at the top: the SDK's host imports the mcp server, checked as it loads (see `connectors_preview`).
    from gateway.sdk import ConnectorNotFound, load
    from gateway.sdk.contract import Verdict, run_contract

    settings, path = _settings(args)
    calls = dict(_call(spec) for spec in args.call)
    try:
        connector = load(args.name, path=path)
    except ConnectorNotFound as exc:
        _report([Verdict("load", False, str(exc))], as_json=args.json)
        return 1
    verdicts = [Verdict("load", True, f"{args.name} is a gateway.sdk.Connector named {connector.name!r}")]
    verdicts += anyio.run(lambda: run_contract(connector, settings, calls))
    _report(verdicts, as_json=args.json)
    return 0 if all(v.passed for v in verdicts) else 1


def _settings(args: argparse.Namespace) -> tuple[dict[str, Any], list[Path]]:
    path = [p.resolve() for p in args.path]
    if args.connector_file is not None:
        from gateway.config import load_connector
        from gateway.settings.connectors import PythonConnector

        file_settings = load_connector(args.connector_file)
        if not isinstance(file_settings, PythonConnector):
            raise ConfigError(f'{args.connector_file}: kind is {file_settings.kind!r}, not "python"')
        return dict(file_settings.settings), [*path, *file_settings.path]
    if args.settings is None:
        return {}, path
    try:
        given = json.loads(args.settings)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--settings is not JSON: {exc}") from None
    if not isinstance(given, dict):
        raise ConfigError('--settings must be a JSON object, like \'{"currency": "EUR"}\'')
    return given, path


def _call(spec: str) -> tuple[str, dict[str, Any]]:
    name, _, arguments = spec.partition("=")
    try:
        parsed = json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--call {spec!r}: the arguments are not JSON ({exc}); write TOOL='{{...}}'") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"--call {spec!r}: the arguments must be a JSON object")
    return name, parsed


def _report(verdicts: list[Verdict], *, as_json: bool) -> None:
    for verdict in verdicts:
        mark = "skip" if verdict.skipped else ("pass" if verdict.passed else "FAIL")
        if as_json:
            print(json.dumps({"check": verdict.check, "result": mark, "detail": verdict.detail}))
        else:
            print(f"{mark:4}  {verdict.check}: {verdict.detail}")
    failed = [v.check for v in verdicts if not v.passed]
    summary = f"{len(failed)} check(s) failed: {', '.join(failed)}" if failed else "the connector passes the contract"
    if not as_json:
        print(summary, file=sys.stderr if failed else sys.stdout)
