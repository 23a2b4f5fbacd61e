"""`gateway connectors preview FILE`: the tools an OpenAPI connector file makes, before any gateway runs.

A connector author iterates on curation (select, rename, hide, fix) with this: it reads the
spec and the file exactly as the gateway would, prints each resulting tool with its method,
path, annotations and arguments, and every operation left out with why. Nothing is called.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.output import print_table
from gateway.errors import ConfigError

if TYPE_CHECKING:  # imported where used: the connectors package checks the SDK as it loads (see `_preview`)
    from gateway.connectors.openapi.operations import Conversion, Operation
    from gateway.settings.openapi import OpenApiConnector

_HINTS = (("read_only", "readOnlyHint"), ("destructive", "destructiveHint"), ("idempotent", "idempotentHint"))


def build(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help='the connector file (kind = "openapi")')
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.set_defaults(run=_preview)


def _preview(args: argparse.Namespace) -> int:
    # Here, not at the top: importing the connectors package checks the installed mcp SDK, and a
    # mismatch must reach the user as `gateway`'s one-line error, not as a traceback of `import`.
    from gateway.config import load_connector
    from gateway.connectors.openapi.spec_loading import load_conversion, spec_path
    from gateway.settings.openapi import OpenApiConnector

    settings = load_connector(args.file)
    if not isinstance(settings, OpenApiConnector):
        raise ConfigError(
            f"{args.file}: is a connector of kind {getattr(settings, 'kind', '?')!r}; preview shows what an "
            'OpenAPI connector file (kind = "openapi") makes of its spec'
        )
    conversion = load_conversion(settings)
    base_url = settings.base_url or (conversion.servers[0] if conversion.servers else None)
    if args.json:
        print(json.dumps(_document(settings, conversion, base_url), indent=2))
        return 0
    print(
        f"{conversion.title or 'API'} {conversion.version}: {_count(len(conversion.operations), 'tool')}, "
        f"{_count(len(conversion.left_out), 'operation')} left out"
    )
    print(f"spec: {settings.spec if settings.spec.startswith(('http://', 'https://')) else spec_path(settings)}")
    print(f"base_url: {base_url or '(none: set base_url, the spec lists no servers)'}")
    print()
    print_table(
        ("TOOL", "METHOD", "PATH", "ANNOTATIONS", "ARGUMENTS"),
        [
            (o.tool_name, o.method, o.path_template, _hints(o) or "-", ", ".join(_arguments(o)) or "-")
            for o in conversion.operations
        ],
    )
    if conversion.left_out:
        print()
        print_table(
            ("LEFT OUT", "METHOD", "PATH", "WHY"),
            [(left.operation, left.method, left.path, left.reason) for left in conversion.left_out],
        )
    return 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _hints(operation: Operation) -> str:
    annotations = operation.definition.get("annotations", {})
    return ",".join(name for name, key in _HINTS if annotations.get(key))


def _arguments(operation: Operation) -> list[str]:
    """Argument names, `*` after the required ones."""
    schema = operation.definition["inputSchema"]
    required = set(schema.get("required", ()))
    return [f"{name}*" if name in required else name for name in schema.get("properties", {})]


def _document(settings: OpenApiConnector, conversion: Conversion, base_url: str | None) -> dict[str, Any]:
    return {
        "connector": settings.name,
        "spec": settings.spec,
        "title": conversion.title,
        "version": conversion.version,
        "base_url": base_url,
        "tools": [
            {
                "name": o.tool_name,
                "operation_id": o.operation_id,
                "method": o.method,
                "path": o.path_template,
                "annotations": o.definition.get("annotations", {}),
                "arguments": _arguments(o),
                "fixed": sorted([*o.fixed, *(o.body.fixed if o.body else {})]),
                "definition": o.definition,
            }
            for o in conversion.operations
        ],
        "left_out": [
            {"operation": left.operation, "method": left.method, "path": left.path, "reason": left.reason}
            for left in conversion.left_out
        ],
    }
