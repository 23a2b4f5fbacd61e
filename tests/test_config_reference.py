"""The configuration reference: generated from the settings models, checked in, and complete."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.config_reference import (
    REGENERATE_COMMAND,
    fields_without_description,
    render_reference,
    undocumented_fields,
)
from harness import run_cli

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "configuration.md"


def test_the_checked_in_reference_is_what_the_models_generate() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render_reference(), (
        f"{REFERENCE.relative_to(ROOT)} is out of date with the settings models: run `{REGENERATE_COMMAND}` "
        "and commit the result"
    )


def test_every_setting_has_a_description() -> None:
    missing = undocumented_fields()
    assert not missing, (
        "these settings have no description for the configuration reference; give each a "
        "Field(default, description=...) saying what it does:\n  " + "\n  ".join(missing)
    )


def test_a_setting_without_a_description_is_found_in_nested_tables() -> None:
    class Inner(BaseModel):
        model_config = ConfigDict(frozen=True)
        told: int = Field(default=1, description="Documented.")
        untold: int = 2

    class Outer(BaseModel):
        model_config = ConfigDict(frozen=True)
        table: Inner = Field(default=Inner(), description="A table.")
        tables: tuple[Inner, ...] = Field(default=(), description="An array of tables.")
        named: dict[str, Inner] = Field(default={}, description="Tables by name.")
        bare: str = "x"

    assert fields_without_description(Outer) == ["table.untold", "tables.untold", "named.<name>.untold", "bare"]


def test_every_key_of_the_shipped_examples_is_in_the_reference() -> None:
    """The examples teach by showing keys; each must be findable in the reference, under its own table."""
    documented = _documented_keys(render_reference())
    examples = {
        "gateway.toml": [ROOT / "examples/quickstart/gateway.toml", ROOT / "examples/deployment/gateway.toml"],
        "connector": sorted((ROOT / "examples").glob("*/connectors/*.toml")),
    }
    assert examples["connector"], "the examples should include connector files"
    missing = []
    for file_kind, files in examples.items():
        for file in files:
            for table, key in _keys_of(tomllib.loads(file.read_text(encoding="utf-8"))):
                if (file_kind, table, key) not in documented:
                    missing.append(f"{file.relative_to(ROOT)}: [{table}] {key}")
    assert not missing, "keys used in the examples but missing from the reference:\n  " + "\n  ".join(missing)


def test_the_command_prints_and_writes_the_reference(tmp_path: Path) -> None:
    printed = run_cli("config", "reference")
    assert printed.stdout == render_reference()
    output = tmp_path / "docs" / "configuration.md"
    written = run_cli("config", "reference", "-o", str(output))
    assert output.read_text(encoding="utf-8") == render_reference()
    assert f"wrote {output}" in written.stderr


def _documented_keys(markdown: str) -> set[tuple[str, str, str]]:
    """(file kind, table, key) for every row of the reference; tables of connector files are relative."""
    keys: set[tuple[str, str, str]] = set()
    file_kind, table = "", ""
    for line in markdown.splitlines():
        if line.startswith("## "):
            file_kind = "gateway.toml" if "gateway.toml" in line else "connector"
            table = ""
        elif line.startswith("### "):
            header = re.search(r"`\[+([^\]]+)\]+`", line)
            table = header.group(1) if header else ""
        elif match := re.match(r"\| `([A-Za-z_]+)` \|", line):
            keys.add((file_kind, table, match.group(1)))
    return keys


def _keys_of(document: dict[str, Any], table: str = "") -> list[tuple[str, str]]:
    """(table, key) for every key of a parsed TOML file; named sub-tables (`[tools.x]`) become `<name>`."""
    keys = []
    for key, value in document.items():
        if isinstance(value, dict) and not _is_inline_value(table, key):
            inner = f"{table}.{key}" if table else key
            if table == "tools":
                inner = "tools.<name>"
            keys += _keys_of(value, inner)
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            for item in value:
                keys += _keys_of(item, f"{table}.{key}" if table else key)
        else:
            keys.append((table, key))
    return keys


def _is_inline_value(table: str, key: str) -> bool:
    """Tables whose keys are data (environment variables, headers, tool names), not settings."""
    return (table, key) in {("", "env"), ("", "headers"), ("audit.redaction", "tools"), ("telemetry", "otlp_headers")}
