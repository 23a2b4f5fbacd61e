"""Large public OpenAPI documents convert whole: each operation is a valid tool or is reported with why."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.connectors.openapi.conversion import convert
from gateway.connectors.openapi.spec_loading import parse_spec
from gateway.settings.openapi import OpenApiCuration

DATA = Path(__file__).parent / "data" / "openapi"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_VALID_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@pytest.mark.parametrize(
    ("file", "least_converted"),
    [("box.json", 280), ("xero_accounting.yaml", 190)],
)
def test_every_operation_of_a_public_spec_converts_or_is_reported(file: str, least_converted: int) -> None:
    path = DATA / file
    assert path.stat().st_size < 2 * 1024 * 1024
    document: dict[str, Any] = parse_spec(path.read_text(), str(path))
    operations = {
        (method.upper(), route) for route, item in document["paths"].items() for method in item if method in _METHODS
    }
    started = time.perf_counter()
    conversion = convert(document, OpenApiCuration())
    elapsed = time.perf_counter() - started

    converted = {(o.method, o.path_template) for o in conversion.operations}
    reported = {(left.method, left.path) for left in conversion.left_out}
    assert converted | reported == operations and not converted & reported
    assert len(conversion.operations) + len(conversion.left_out) == len(operations)
    assert len(conversion.operations) >= least_converted
    assert all(left.reason for left in conversion.left_out)

    names = [o.tool_name for o in conversion.operations]
    assert len(set(names)) == len(names)
    assert all(_VALID_NAME.fullmatch(name) for name in names)
    for operation in conversion.operations:
        definition = operation.definition
        assert definition["name"] == operation.tool_name and definition["description"]
        jsonschema.Draft202012Validator.check_schema(definition["inputSchema"])
        assert definition["inputSchema"]["type"] == "object"
        if "outputSchema" in definition:
            assert definition["outputSchema"]["type"] == "object"
        assert len(json.dumps(definition)) <= 64 * 1024
    assert elapsed < 10, f"converting {file} took {elapsed:.1f} s"

    if file == "box.json":
        why = {left.operation: left.reason for left in conversion.left_out}
        assert why["post_files_content"].startswith("its request body is multipart/form-data only")
    else:
        why = {left.operation: left.reason for left in conversion.left_out}
        assert why["createAccountAttachmentByFileName"].startswith("its request body is application/octet-stream")
