"""`gateway connectors preview FILE`: what an OpenAPI connector file makes of its spec, before a gateway runs.

The author reads the tools (name, method, path, annotations, arguments) and every operation left
out with why; a curation typo stops the preview with the file and line, as it would stop `serve`.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness import run_cli

SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "Inventory", "version": "1.0"},
    "servers": [{"url": "https://inventory.example.com"}],
    "paths": {
        "/items": {
            "get": {
                "operationId": "listItems",
                "tags": ["items"],
                "parameters": [
                    {"name": "tenant", "in": "query", "required": True, "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                ],
                "responses": {"200": {"description": "ok"}},
            },
        },
        "/items/{item_id}": {
            "parameters": [{"name": "item_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "delete": {"operationId": "deleteItem", "tags": ["items"], "responses": {"204": {"description": "gone"}}},
        },
        "/health": {"get": {"responses": {"200": {"description": "ok"}}}},
    },
}

CURATION = """kind = "openapi"
spec = "inventory.json"

[[select.include]]
tags = ["items"]

[[select.exclude]]
methods = ["DELETE"]

[operations.listItems]
name = "list_items"
fixed = { tenant = "acme" }
"""


def _files(tmp_path: Path, curation: str = CURATION) -> Path:
    (tmp_path / "inventory.json").write_text(json.dumps(SPEC))
    file = tmp_path / "inventory.toml"
    file.write_text(curation)
    return file


def test_preview_prints_the_tools_and_every_operation_left_out_with_why(tmp_path: Path) -> None:
    out = run_cli("connectors", "preview", str(_files(tmp_path))).stdout
    assert out.startswith("Inventory 1.0: 1 tool, 2 operations left out\n")
    assert "base_url: https://inventory.example.com" in out
    tool = next(line for line in out.splitlines() if line.startswith("list_items"))
    assert tool.split() == ["list_items", "GET", "/items", "read_only,idempotent", "limit"]  # tenant is fixed
    assert "excluded by [[select.exclude]] rule 1" in out
    assert "not selected: no [[select.include]] rule matches it" in out


def test_preview_json_has_each_tools_definition(tmp_path: Path) -> None:
    document = json.loads(run_cli("connectors", "preview", str(_files(tmp_path)), "--json").stdout)
    (tool,) = document["tools"]
    assert tool["fixed"] == ["tenant"]
    assert set(tool["definition"]["inputSchema"]["properties"]) == {"limit"}


def test_preview_refuses_a_curation_typo_and_a_file_of_another_kind(tmp_path: Path) -> None:
    typo = run_cli(
        "connectors", "preview", str(_files(tmp_path, CURATION.replace("listItems", "listItem"))), check=False
    )
    assert typo.returncode == 1
    assert "inventory.toml:10: [operations.listItem] names no operation of the spec" in typo.stderr
    assert "closest: 'listItems'" in typo.stderr
    other = tmp_path / "crm.toml"
    other.write_text('kind = "mcp-http"\nurl = "https://crm.example.com/mcp"\n')
    refused = run_cli("connectors", "preview", str(other), check=False)
    assert refused.returncode == 1 and "is a connector of kind 'mcp-http'" in refused.stderr
