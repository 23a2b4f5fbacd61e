"""Backends behind the gateway, one `Connector` per connector file."""

from __future__ import annotations

from collections.abc import Callable

from gateway.connectors.base import (
    Connector,
    Health,
    HealthState,
    Listing,
    ListingListener,
    ResourceUpdateListener,
)
from gateway.connectors.mcp_connector import McpConnector
from gateway.connectors.python_connector import InProcessConnector, subprocess_settings
from gateway.settings.connector_kinds import AnyConnector
from gateway.settings.connectors import PythonConnector
from gateway.settings.openapi import OpenApiConnector

__all__ = ["Connector", "ConnectorFactory", "Health", "HealthState", "Listing", "build_connector"]

ConnectorFactory = Callable[[AnyConnector, ListingListener, ResourceUpdateListener | None], Connector]
"""Makes the connector of one connector file; the runtime takes another for tests (an in-memory backend)."""


def build_connector(
    settings: AnyConnector,
    on_listing: ListingListener,
    on_resource_updated: ResourceUpdateListener | None = None,
) -> Connector:
    """The one place that maps a connector file's `kind` to the class that serves it."""
    if isinstance(settings, OpenApiConnector):
        from gateway.connectors.openapi.connector import OpenApiRestConnector

        return OpenApiRestConnector(settings, on_listing)
    if isinstance(settings, PythonConnector):
        if settings.isolation == "in-process":
            return InProcessConnector(settings, on_listing)
        return McpConnector(subprocess_settings(settings), on_listing, on_resource_updated)
    return McpConnector(settings, on_listing, on_resource_updated)
