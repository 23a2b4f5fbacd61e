"""The `gateway` command as an operator uses it."""

from __future__ import annotations

import json
from pathlib import Path

from harness import run_cli, stdio_connector, write_gateway_config


def test_help_lists_the_subcommands() -> None:
    result = run_cli("--help")
    for command in ("serve", "stdio", "migrate", "keys", "tools"):
        assert command in result.stdout


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    config = str(write_gateway_config(tmp_path, {}))
    created = run_cli("keys", "create", "--config", config, "--agent", "sales-bot", "--role", "sales")
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("agw_")
    assert "not shown again" in created.stdout
    listed = run_cli("keys", "list", "--config", config)
    assert "sales-bot" in listed.stdout and "sales" in listed.stdout
    assert key not in listed.stdout
    record = json.loads(run_cli("keys", "list", "--config", config, "--json").stdout)
    revoked = run_cli("keys", "revoke", "--config", config, record["id"])
    assert f"Revoked key {record['id']}" in revoked.stdout
    again = json.loads(run_cli("keys", "list", "--config", config, "--json").stdout)
    assert again["revoked_at"] is not None
    unknown = run_cli("keys", "revoke", "--config", config, "key_00000000", check=False)
    assert unknown.returncode == 1 and "key_00000000" in unknown.stderr
    bad = run_cli("keys", "create", "--config", config, "--agent", "bad agent!", check=False)
    assert bad.returncode == 2 and "agent" in bad.stderr


def test_tools_list_shows_mapping_annotations_and_health(tmp_path: Path) -> None:
    config = str(
        write_gateway_config(
            tmp_path,
            {
                "sink": stdio_connector(),
                "gone": 'kind = "mcp-stdio"\ncommand = ["/nonexistent/server"]\nconnect_timeout = 2\n',
            },
        )
    )
    table = run_cli("tools", "list", "--config", config).stdout
    assert "sink__echo" in table and "read_only,idempotent" in table
    rows = [json.loads(line) for line in run_cli("tools", "list", "--config", config, "--json").stdout.splitlines()]
    by_original = {(r.get("connector"), r.get("original")): r for r in rows}
    long_name = "summarise_quarterly_revenue_by_region_and_product_line_for_the_board"
    shortened = by_original[("sink", long_name)]["exposed"]
    assert len(shortened) <= 64 and shortened.startswith("sink__summarise_quarterly")
    assert by_original[("sink", "echo")]["health"] == "healthy"
    gone = next(r for r in rows if r.get("connector") == "gone")
    assert gone["health"] == "unhealthy"
