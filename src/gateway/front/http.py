"""The streamable HTTP door at `/mcp`: authentication, body limit, then the SDK's session manager."""

from __future__ import annotations

from typing import Any

from mcp.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp

from gateway.config import AuthSettings, ServerSettings
from gateway.identity.bearer import Authenticator, BearerAuthentication, RefusalRecorder
from gateway.identity.resource_metadata import metadata_url

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_session_manager(server: Server[Any], settings: ServerSettings) -> StreamableHTTPSessionManager:
    return StreamableHTTPSessionManager(
        app=server,
        json_response=False,
        stateless=False,
        security_settings=_transport_security(settings),
        max_request_body_size=settings.max_body_bytes,
    )


def build_mcp_endpoint(
    manager: StreamableHTTPSessionManager,
    authenticator: Authenticator,
    auth: AuthSettings,
    on_refused: RefusalRecorder | None = None,
) -> ASGIApp:
    metadata = metadata_url(auth.resource) if auth.resource else None
    return BearerAuthentication(manager.asgi_app, authenticator, resource_metadata_url=metadata, on_refused=on_refused)


def _transport_security(settings: ServerSettings) -> TransportSecuritySettings | None:
    """DNS-rebinding protection: on by default for loopback, or for the hosts the operator lists."""
    if settings.allowed_hosts:
        hosts = list(settings.allowed_hosts)
    elif settings.host in _LOOPBACK:
        hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    else:
        return None
    origins = [f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)
