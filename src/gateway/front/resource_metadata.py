"""OAuth 2.0 Protected Resource Metadata (RFC 9728) for the MCP authorization flow.

An MCP client that gets 401 follows `resource_metadata` in the challenge to this document,
learns which authorization servers issue tokens for the gateway, obtains one with this
gateway as its audience (RFC 8707), and retries. Only tokens issued for this resource are
accepted: the issuers' `audiences` default to it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.settings.auth import AuthSettings

WELL_KNOWN = "/.well-known/oauth-protected-resource"


def metadata_url(resource: str) -> str:
    """Where a resource's metadata lives: the well-known prefix inserted before the resource's path."""
    parts = urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}{WELL_KNOWN}{parts.path.rstrip('/')}"


def metadata_routes(auth: AuthSettings) -> list[Route]:
    """The metadata document at the path-aware location and at the bare well-known path."""
    if auth.resource is None:
        return []
    document = {
        "resource": auth.resource,
        "authorization_servers": [issuer.issuer for issuer in auth.issuers],
        "bearer_methods_supported": ["header"],
        "resource_name": "Autonomy Gateway",
    }
    if auth.scopes_supported:
        document["scopes_supported"] = list(auth.scopes_supported)

    async def serve(request: Request) -> JSONResponse:
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600"})

    path = urlsplit(metadata_url(auth.resource)).path
    return [Route(p, serve, methods=["GET"]) for p in dict.fromkeys((path, WELL_KNOWN))]
