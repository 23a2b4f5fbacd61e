"""The package's layers hold: every module imports only from its own layer or the ones below it.

The order is the README's Layout map, top to bottom. A new stage (a hold, a lock) or a new door
goes in the layer it belongs to; an import that points up means the code is reaching for
something it should be handed. The SDK's internals are borrowed in one module only.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import gateway

PACKAGE = Path(gateway.__file__).parent

#: Top to bottom. Each entry is a top-level module or package of `gateway`.
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer.split())
    for layer in (
        "__main__",
        "cli",
        "workers",
        "app",
        "console",
        "runtime",
        "front",
        "pipeline",
        "holding gateway_tools",
        "request_kinds",
        "approvals coordination notifications pinning",
        "policy audit telemetry",
        "catalog calls executions",
        "resource_uris",
        "connectors signals identity",
        "mcp_sdk sdk storage config config_reference",
        "settings errors logs sealed_text memo __init__",
    )
)


def _unit(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def _layer_of(unit: str) -> int:
    for index, layer in enumerate(LAYERS):
        if unit in layer:
            return index
    raise AssertionError(f"gateway.{unit} is in no layer of tests/test_layers.py: add it where it belongs")


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import of the file, top level or not."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def _sources() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" not in path.relative_to(PACKAGE).parts:
            yield path


def test_every_import_points_down_the_layers() -> None:
    upward = []
    for path in _sources():
        unit = _unit(path)
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] != "gateway":
                continue
            target = parts[1] if len(parts) > 1 else "__init__"
            if target != unit and _layer_of(target) < _layer_of(unit):
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert upward == [], "imports that point up the layers:\n" + "\n".join(upward)


def test_only_the_adapter_borrows_the_sdks_internals() -> None:
    borrowing = []
    for path in _sources():
        if path == PACKAGE / "mcp_sdk.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("mcp", "mcp_types"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private or any(part.startswith("_") for part in node.module.split(".")):
                    borrowing.append(f"{path.relative_to(PACKAGE)}:{node.lineno} from {node.module} import ...")
    assert borrowing == [], "private SDK names outside gateway/mcp_sdk.py:\n" + "\n".join(borrowing)


def test_the_layers_name_every_part_of_the_package() -> None:
    units = {_unit(path) for path in _sources()}
    named = frozenset().union(*LAYERS)
    assert units <= named, f"not in any layer: {sorted(units - named)}"
    assert named <= units, f"layers name parts that no longer exist: {sorted(named - units)}"
