"""Read an OpenAPI connector's spec: a file next to the connector file, or a URL cached on disk."""

from __future__ import annotations

from typing import Any

from gateway.settings.openapi import OpenApiConnector


def load_spec(settings: OpenApiConnector) -> dict[str, Any]:
    """The spec document as parsed JSON/YAML; raises `OpenApiSpecError` naming the file or URL."""
    raise NotImplementedError
