"""The procurement example (`examples/procurement/`) as tests run it: copied, started, read.

Each test module copies the example into a temporary folder, so its `.state/` (database, keys,
the ERP's orders) is the test's own, and runs the example's own `run.py` as a newcomer does.
`listed_catalog()` asks the example's backends what they list, the way `gateway policy test`'s
`catalog.json` must describe them.
"""

from __future__ import annotations

import json
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "procurement"
CONNECTORS = ("quotes", "compliance", "erp")


def copy_example(target: Path) -> Path:
    """The example in `target`, without any state a local run left behind."""
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".state", "__pycache__"))
    return target


async def listed_catalog(example: Path = EXAMPLE) -> dict[str, Any]:
    """What `policies/tests/catalog.json` must hold: each backend's listing, with its connector file's labels."""
    connectors: dict[str, Any] = {}
    for name in CONNECTORS:
        settings = tomllib.loads((example / "connectors" / f"{name}.toml").read_text())
        script = settings["command"][1]
        server = StdioServerParameters(command=sys.executable, args=[str(example / script)], cwd=str(example))
        async with Client(server) as client:
            tools = (await client.list_tools()).tools
        overrides = {
            tool: {"labels": override["labels"]}
            for tool, override in settings.get("tools", {}).items()
            if override.get("labels")
        }
        connectors[name] = {
            "labels": settings.get("labels", []),
            "overrides": overrides,
            "tools": [tool.model_dump(by_alias=True, exclude_none=True, mode="json") for tool in tools],
            "prompts": [],
            "resources": [],
            "resourceTemplates": [],
        }
    return {"separator": "__", "connectors": connectors}


def catalog_text(catalog: dict[str, Any]) -> str:
    return json.dumps(catalog, indent=2, ensure_ascii=False) + "\n"
