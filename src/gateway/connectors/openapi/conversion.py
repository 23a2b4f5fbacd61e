"""Turn an OpenAPI 3.0/3.1 document and a connector file's curation into tools."""

from __future__ import annotations

from typing import Any

from gateway.connectors.openapi.operations import Conversion
from gateway.settings.openapi import OpenApiCuration


def convert(spec_document: dict[str, Any], curation: OpenApiCuration) -> Conversion:
    """Every selected operation as a tool, and every other one in `left_out` with why.

    Raises `OpenApiSpecError` when the document is not OpenAPI 3.0/3.1, and
    `OpenApiCurationError` when the curation names what the spec does not have.
    """
    raise NotImplementedError
