"""`gateway connectors new NAME`: a connector package to start from, whose own test passes as written.

The package declares its entry point, holds one example tool with a typed signature, a test
that runs the tool and the connector contract without a gateway, and a README. It is the
shortest path from nothing to a connector the gateway loads.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def build(actions: Any) -> None:
    new = actions.add_parser(
        "new",
        help="scaffold a Python connector package (entry point, one example tool, a passing test)",
        description="Create DIRECTORY/NAME (default ./NAME) holding a connector package ready to install.",
    )
    new.add_argument("name", metavar="NAME", help="the connector's name: lowercase letters, digits and _")
    new.add_argument("--directory", type=Path, default=Path("."), help="where to create the package directory")
    new.set_defaults(run=_new)


def _new(args: argparse.Namespace) -> int:
    name: str = args.name
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{name!r} is not a usable connector name: start with a lowercase letter, then lowercase letters, "
            "digits or _ (at most 32); it is the package, module and entry point name"
        )
    root = (args.directory / name).resolve()
    if root.exists():
        raise ConfigError(f"{root} already exists: choose another name or --directory")
    package = f"{name}_connector"
    files = {
        "pyproject.toml": _PYPROJECT,
        f"src/{package}/__init__.py": _MODULE,
        "tests/test_connector.py": _TEST,
        "README.md": _README,
        f"{name}.toml": _CONNECTOR_FILE,
    }
    for relative, template in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(template.replace("__NAME__", name).replace("__PACKAGE__", package), encoding="utf-8")
    print(f"Created the connector package {root}")
    print("Next:")
    print(f"  1. pip install -e '{root}[test]'   (into the gateway's environment)")
    print(f"  2. pytest {root / 'tests'}")
    print(f"  3. gateway connectors check {name}")
    print(f"  4. cp {root / (name + '.toml')} <your connectors dir>/  and restart the gateway")
    return 0


_PYPROJECT = """[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "__NAME__-connector"
version = "0.1.0"
description = "The __NAME__ connector for Autonomy Gateway."
requires-python = ">=3.11"
dependencies = ["autonomy-gateway"]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points."gateway.connectors"]
__NAME__ = "__PACKAGE__:connector"

[tool.setuptools.packages.find]
where = ["src"]
"""

_MODULE = '''"""The __NAME__ connector: its tools, as the gateway's agents see them."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from gateway.sdk import Connector, ToolError


class Settings(BaseModel):
    """The `settings` table of the connector file (secrets as `${ENV}` there)."""

    greeting: str = "Hello"


class Greeting(BaseModel):
    text: str
    length: int


connector = Connector("__NAME__", settings=Settings)


@connector.on_start
async def start() -> None:
    """Open clients and check credentials here; raising marks the connector unhealthy and retried."""


@connector.on_close
async def close() -> None:
    """Let go of what `start` opened."""


@connector.health
async def health() -> str:
    """Return a detail when healthy; raise to say what is wrong."""
    return "ready"


@connector.tool(read_only=True)
async def greet(
    name: Annotated[str, Field(min_length=1, max_length=100, description="Who to greet.")],
    shout: Annotated[bool, Field(description="Upper-case the greeting.")] = False,
) -> Greeting:
    """Greet someone by name."""
    if name.strip() != name:
        raise ToolError("The name has leading or trailing spaces; pass it trimmed.")
    text = f"{connector.settings.greeting}, {name}!"
    text = text.upper() if shout else text
    return Greeting(text=text, length=len(text))
'''

_TEST = '''"""The connector's own tests: its tools and the gateway's connector contract, without a gateway."""

from __future__ import annotations

import anyio

from gateway.sdk.contract import run_contract
from __PACKAGE__ import connector


def test_greet_returns_structured_content() -> None:
    async def scenario() -> dict[str, object]:
        await connector.start({"greeting": "Hi"})
        try:
            return await connector.call("greet", {"name": "Ada"})
        finally:
            await connector.close()

    result = anyio.run(scenario)
    assert result["structuredContent"] == {"text": "Hi, Ada!", "length": 8}


def test_invalid_arguments_are_a_tool_error() -> None:
    async def scenario() -> dict[str, object]:
        await connector.start({})
        try:
            return await connector.call("greet", {"name": ""})
        finally:
            await connector.close()

    result = anyio.run(scenario)
    assert result["isError"] is True


def test_the_connector_passes_the_contract() -> None:
    verdicts = anyio.run(lambda: run_contract(connector, {}, {"greet": {"name": "Ada"}}))
    failed = [f"{v.check}: {v.detail}" for v in verdicts if not v.passed]
    assert failed == []
'''

_README = """# __NAME__ connector

A Python connector for Autonomy Gateway, built with `gateway.sdk`.

```sh
pip install -e '.[test]'         # into the gateway's environment
pytest                           # the tools and the connector contract
gateway connectors check __NAME__  # the contract, as the gateway runs it
```

Then copy `__NAME__.toml` into the gateway's connectors directory. Its tools appear to agents as
`__NAME____<tool>`, governed by the gateway's policies and audited like any backend's.
"""

_CONNECTOR_FILE = """# The gateway's connector file for this connector: copy it into the connectors directory.
kind = "python"
entry_point = "__NAME__"
isolation = "in-process"   # or "subprocess" to run it in a supervised child process

[settings]
greeting = "Hello"
"""
