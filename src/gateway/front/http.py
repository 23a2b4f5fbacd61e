"""The streamable HTTP door at `/mcp`: authentication, then the endpoint that routes each exchange."""

from __future__ import annotations

from typing import Any

from mcp.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp

from gateway.front.bearer import Authenticator, BearerAuthentication, RefusalRecorder
from gateway.front.ended_sessions import EndedSessions
from gateway.front.endpoint import McpEndpoint
from gateway.front.resource_metadata import metadata_url
from gateway.front.server import ChangeNotifier
from gateway.front.sessions import SessionSealer
from gateway.pipeline import Pipeline
from gateway.settings.auth import AuthSettings
from gateway.settings.server import ServerSettings

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_session_manager(server: Server[Any], settings: ServerSettings) -> StreamableHTTPSessionManager:
    """The SDK's stateless handling, for every request the endpoint does not serve itself.

    Stateless: sessions live in sealed ids (`front/sessions.py`), not in this process.
    """
    return StreamableHTTPSessionManager(
        app=server,
        json_response=False,
        stateless=True,
        security_settings=transport_security(settings),
        max_request_body_size=settings.max_body_bytes,
    )


def build_endpoint(
    server: Server[Any],
    pipeline: Pipeline,
    notifier: ChangeNotifier,
    sdk: StreamableHTTPSessionManager,
    settings: ServerSettings,
    ended: EndedSessions | None = None,
) -> McpEndpoint:
    keys = [key.get_secret_value() for key in settings.session_keys]
    sealer = SessionSealer(keys, lifetime=settings.session_lifetime)
    return McpEndpoint(
        server=server,
        pipeline=pipeline,
        notifier=notifier,
        sealer=sealer,
        sdk=sdk,
        security=transport_security(settings),
        max_body_bytes=settings.max_body_bytes,
        ended=ended,
    )


def build_mcp_endpoint(
    endpoint: ASGIApp,
    authenticator: Authenticator,
    auth: AuthSettings,
    on_refused: RefusalRecorder | None = None,
) -> ASGIApp:
    metadata = metadata_url(auth.resource) if auth.resource else None
    return BearerAuthentication(endpoint, authenticator, resource_metadata_url=metadata, on_refused=on_refused)


def transport_security(settings: ServerSettings) -> TransportSecuritySettings | None:
    """DNS-rebinding protection: on by default for loopback, or for the hosts the operator lists."""
    if settings.allowed_hosts:
        hosts = list(settings.allowed_hosts)
    elif settings.host in _LOOPBACK:
        hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    else:
        return None
    origins = [f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)
