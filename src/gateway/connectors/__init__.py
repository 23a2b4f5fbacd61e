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
from gateway.settings.connectors import McpHttpConnector, McpStdioConnector

__all__ = ["Connector", "ConnectorFactory", "Health", "HealthState", "Listing", "build_connector"]

ConnectorFactory = Callable[
    [McpStdioConnector | McpHttpConnector, ListingListener, ResourceUpdateListener | None], Connector
]
"""Makes the connector of one connector file; the runtime takes another for tests (an in-memory backend)."""


def build_connector(
    settings: McpStdioConnector | McpHttpConnector,
    on_listing: ListingListener,
    on_resource_updated: ResourceUpdateListener | None = None,
) -> Connector:
    """The one place that maps a connector file's `kind` to the class that serves it."""
    return McpConnector(settings, on_listing, on_resource_updated)
