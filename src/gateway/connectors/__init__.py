"""Backends behind the gateway, one `Connector` per connector file."""

from __future__ import annotations

from gateway.config import McpHttpConnector, McpStdioConnector
from gateway.connectors.base import (
    Connector,
    Health,
    HealthState,
    Listing,
    ListingListener,
    ResourceUpdateListener,
)
from gateway.connectors.mcp_backend import McpBackend
from gateway.connectors.mcp_http import http_link
from gateway.connectors.mcp_stdio import stdio_link

__all__ = ["Connector", "Health", "HealthState", "Listing", "McpBackend", "build_connector"]


def build_connector(
    settings: McpStdioConnector | McpHttpConnector,
    on_listing: ListingListener,
    on_resource_updated: ResourceUpdateListener | None = None,
) -> Connector:
    """The one place that maps a connector file's `kind` to the class that serves it."""
    if isinstance(settings, McpStdioConnector):
        return McpBackend(
            settings, lambda lost, changed: stdio_link(settings, lost, changed), on_listing, on_resource_updated
        )
    return McpBackend(
        settings, lambda lost, changed: http_link(settings, lost, changed), on_listing, on_resource_updated
    )
