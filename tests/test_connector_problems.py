"""Mistakes in connector files and names, seen where an operator looks: `/readyz`, the log, the CLI.

A misspelled `[tools.<name>]` override, two tools that would share one exposed name and a
stdio command that cannot start are each reported with what to fix and where; none of them is
silently worked around.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from gateway.catalog import exposed_name
from harness import GatewayProcess, eventually, mcp_client, running_gateway, stdio_connector

MISSING_PROGRAM = "/nonexistent/finance-server"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("gateway")
    connectors = {
        # `ecko` is a typo of the backend's `echo`: the tool must not stay listed and callable.
        "finance": stdio_connector(extra="[tools.ecko]\nenabled = false\n"),
        "crm": stdio_connector(),
        "gone": f'kind = "mcp-stdio"\n\ncommand = ["{MISSING_PROGRAM}", "--token", "${{PYTHON}}"]\n',
    }
    with running_gateway(directory, connectors) as process:
        yield process


@pytest.fixture(scope="module")
def key(gateway: GatewayProcess) -> str:
    return gateway.create_key("problem-agent")


def line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), start=1) if line.startswith(needle))


def log_events(gateway: GatewayProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gateway.log_text().splitlines() if line.startswith("{")]


def override_problem_prefix(gateway: GatewayProcess) -> str:
    file = (gateway.directory / "connectors" / "finance.toml").resolve()
    return f"{file}:{line_of(file.read_text(), '[tools.ecko]')}: [tools.ecko] names no tool of backend 'finance'"


def test_misspelled_override_degrades_its_connector_in_readyz_and_the_log(gateway: GatewayProcess) -> None:
    ready = gateway.readyz()
    assert ready["status"] == "degraded"
    finance = ready["backends"]["finance"]
    assert finance["state"] == "degraded"
    (problem,) = finance["problems"]
    assert problem.startswith(override_problem_prefix(gateway))
    assert "closest tool names: 'echo'" in problem
    assert "none of this connector's tools is offered to agents" in problem
    assert ready["backends"]["crm"] == {**ready["backends"]["crm"], "state": "healthy", "problems": []}
    logged = [e for e in log_events(gateway) if e["message"] == "connector problem" and e["connector"] == "finance"]
    assert [e["problem"] for e in logged] == [problem]


@pytest.mark.anyio
async def test_a_connector_with_a_misspelled_override_offers_no_tool(gateway: GatewayProcess, key: str) -> None:
    async with mcp_client(gateway.url, key) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "crm__echo" in names
        assert not [name for name in names if name.startswith("finance__")]
        with pytest.raises(MCPError, match="unknown tool 'finance__echo'"):
            await client.call_tool("finance__echo", {"text": "should not run"})
        result = await client.call_tool("crm__echo", {"text": "others still work"})
        assert isinstance(result.content[0], types.TextContent) and result.content[0].text == "others still work"


def test_tools_list_and_policy_validate_fail_naming_the_misspelled_override(gateway: GatewayProcess) -> None:
    expected = f"gateway: connector 'finance': {override_problem_prefix(gateway)}"
    table = gateway.cli("tools", "list", check=False)
    assert table.returncode == 1
    assert expected in table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert ["(problems:", "see", "below)", "finance", "-", "-", "degraded"] in rows
    assert "crm__echo" in table.stdout
    assert "finance__echo" not in table.stdout
    lines = [json.loads(line) for line in gateway.cli("tools", "list", "--json", check=False).stdout.splitlines()]
    (finance,) = [line for line in lines if line.get("connector") == "finance"]
    assert finance["health"] == "degraded" and finance["problems"][0].startswith(override_problem_prefix(gateway))
    validate = gateway.cli("policy", "validate", check=False)
    assert validate.returncode == 1
    assert "1 access policies are valid" in validate.stdout
    assert expected in validate.stderr


def test_a_missing_command_is_named_with_its_connector_file(gateway: GatewayProcess) -> None:
    file = (gateway.directory / "connectors" / "gone.toml").resolve()
    expected = (
        f"cannot start program '{MISSING_PROGRAM}': it was not found; fix `command` at {file}:3 or install the program"
    )
    gone = gateway.readyz()["backends"]["gone"]
    assert gone["state"] == "unhealthy"
    assert gone["detail"] == expected
    assert any(e.get("connector") == "gone" and e.get("reason") == expected for e in log_events(gateway))


@pytest.mark.anyio
async def test_tools_that_would_share_an_exposed_name_are_both_refused(tmp_path: Path) -> None:
    dotted = "get.customer"
    rewritten = exposed_name("sink", dotted, "__")
    literal = rewritten.removeprefix("sink__")  # a real tool named like the rewritten one
    with running_gateway(tmp_path, {"sink": stdio_connector()}) as gateway:
        key = gateway.create_key("collision-agent")
        async with mcp_client(gateway.url, key) as client:
            await client.call_tool("sink__add_tool", {"name": dotted})
            await client.call_tool("sink__add_tool", {"name": literal})
            ready = await eventually(
                lambda: (r := gateway.readyz())["backends"]["sink"]["problems"] and r, what="the collision"
            )
            assert ready["backends"]["sink"]["state"] == "degraded"
            (problem,) = ready["backends"]["sink"]["problems"]
            assert problem.startswith(
                f"tools '{dotted}' of connector 'sink' and '{literal}' of connector 'sink' would both be exposed as "
                f"'{rewritten}'; none of them is offered"
            )
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert rewritten not in names and "sink__echo" in names
            with pytest.raises(MCPError, match=f"unknown tool '{rewritten}'"):
                await client.call_tool(rewritten, {})
        logged = [e for e in log_events(gateway) if e["message"] == "connector problem"]
        assert [e["problem"] for e in logged] == [problem]
