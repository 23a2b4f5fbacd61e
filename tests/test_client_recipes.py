"""The README's client recipes, taken from the README and run against the quick start's backends and policies.

A recipe a new user copies must work as written, so these tests read the JSON and Python from
the README itself and change only what differs on this machine: the checkout's path, the port,
the key and a configuration whose database is in the test's own directory.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import TextContent

from harness import GatewayProcess, free_port, run_cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: Placeholders the recipes use for what differs between machines.
CHECKOUT = "/home/me/autonomy-gateway"
QUICKSTART_CONFIG = f"{CHECKOUT}/examples/quickstart/gateway.toml"
DEFAULT_URL = "http://127.0.0.1:8787/mcp"
KEY = "agw_..."
#: What the quick start's sales agent may see.
SALES_TOOLS = {
    "crm__search_customers",
    "crm__get_customer",
    "crm__update_record",
    "gateway__approval_status",
    "gateway__workflow_status",
    "gateway__workflow_note",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def quickstart(tmp_path: Path) -> tuple[GatewayProcess, str]:
    """The quick start's configuration, with its database in `tmp_path`, and a key of its sales agent."""
    (tmp_path / "gateway.toml").write_text(
        f"""
[storage]
url = "sqlite:///{tmp_path / "gateway.db"}"

[connectors]
dir = "{ROOT / "examples" / "quickstart" / "connectors"}"

[policies]
dir = "{ROOT / "policies"}"
"""
    )
    gateway = GatewayProcess(tmp_path, free_port())
    return gateway, gateway.create_key("sales-bot", "sales")


def recipes(section: str, language: str) -> list[str]:
    """The code blocks of one `###` section of the README, in order."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"### {section}\n")
    end = re.compile(r"^##", re.M).search(text, start + 4)
    body = text[start : end.start() if end else len(text)]
    return re.findall(rf"```{language}\n(.*?)```", body, re.S)


async def visible_tools(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


@pytest.mark.anyio
async def test_the_desktop_assistant_recipe_runs_gateway_stdio(quickstart: tuple[GatewayProcess, str]) -> None:
    gateway, key = quickstart
    server = json.loads(recipes("A desktop assistant (stdio)", "json")[0])["mcpServers"]["autonomy-gateway"]
    assert server["command"] == f"{CHECKOUT}/.venv/bin/gateway"
    assert server["env"] == {"GATEWAY_KEY": KEY}
    # The `gateway` script of the environment running the tests is this checkout's `.venv/bin/gateway`.
    parameters = StdioServerParameters(
        command=str(Path(sys.executable).parent / "gateway"),
        args=[str(gateway.config_path) if arg == QUICKSTART_CONFIG else arg for arg in server["args"]],
        env={"GATEWAY_KEY": key},
    )
    with anyio.fail_after(120):
        async with Client(parameters) as client:
            assert await visible_tools(client) == SALES_TOOLS
            result = await client.call_tool("crm__get_customer", {"customer_id": "C-1001"})
    assert not result.is_error
    assert isinstance(result.content[0], TextContent) and "Dana Whitfield" in result.content[0].text


@pytest.mark.anyio
async def test_the_http_recipes_connect_with_their_url_and_headers(quickstart: tuple[GatewayProcess, str]) -> None:
    gateway, key = quickstart
    shapes = [json.loads(block) for block in recipes("An IDE or agent framework (HTTP)", "json")]
    servers: list[dict[str, Any]] = [
        shapes[0]["mcpServers"]["autonomy-gateway"],
        shapes[1]["servers"]["autonomy-gateway"],
    ]
    assert servers[1]["type"] == "http"
    gateway.start()
    try:
        for server in servers:
            assert server["url"] == DEFAULT_URL
            headers = {
                name: value.replace(KEY, key).replace("${input:gateway-key}", key)
                for name, value in server["headers"].items()
            }
            with anyio.fail_after(60):
                async with httpx2.AsyncClient(headers=headers) as http:
                    async with Client(streamable_http_client(gateway.url, http_client=http)) as client:
                        assert await visible_tools(client) == SALES_TOOLS
    finally:
        gateway.stop()


def test_the_python_recipe_runs_as_written(quickstart: tuple[GatewayProcess, str]) -> None:
    gateway, key = quickstart
    code = recipes("Python, with the official `mcp` client", "python")[0]
    assert DEFAULT_URL in code and KEY in code
    gateway.start()
    try:
        ran = subprocess.run(
            [sys.executable, "-c", code.replace(DEFAULT_URL, gateway.url).replace(KEY, key)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        gateway.stop()
    assert ran.returncode == 0, ran.stderr
    assert all(name in ran.stdout for name in SALES_TOOLS) and "Dana Whitfield" in ran.stdout


def test_a_refused_key_stops_gateway_stdio_with_the_reason(quickstart: tuple[GatewayProcess, str]) -> None:
    gateway, _ = quickstart
    refused = run_cli("stdio", "--config", str(gateway.config_path), env={"GATEWAY_KEY": "agw_wrong"}, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().endswith("malformed API key")
    assert refused.stdout == ""
