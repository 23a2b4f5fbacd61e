"""What an issuer publishes about itself: its OpenID discovery document, and fetching such documents.

An issuer configured without `jwks_url` names its key set in the `jwks_uri` of its discovery
document (OpenID Connect Discovery 1.0). The document is believed only if it names the same
issuer, and the URL it gives must be as safe to fetch keys from as a configured one.
"""

from __future__ import annotations

from typing import Any

import httpx

from gateway.settings.auth import TokenIssuer, check_key_url


class IssuerDocumentUnavailable(Exception):
    """An issuer's discovery document or key set could not be fetched or read; says which and why."""


async def discover_jwks_uri(http: httpx.AsyncClient, settings: TokenIssuer) -> str:
    """Where the issuer publishes its key set, from its discovery document."""
    url = settings.discovery_url
    document = await fetch_json_object(http, url)
    if document.get("issuer") != settings.issuer:
        # OpenID Connect Discovery 1.0, section 4.3: the document must name the same issuer.
        raise IssuerDocumentUnavailable(f"{url} names issuer {document.get('issuer')!r}, not {settings.issuer!r}")
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise IssuerDocumentUnavailable(f"{url} has no 'jwks_uri'")
    try:
        check_key_url(jwks_uri, "jwks_uri")
    except ValueError as error:
        raise IssuerDocumentUnavailable(f"{url}: {error}") from None
    return jwks_uri


async def fetch_json_object(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """The JSON object at `url`, or `IssuerDocumentUnavailable` saying what went wrong."""
    try:
        response = await http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as error:
        raise IssuerDocumentUnavailable(f"GET {url} failed: {error!r}") from error
    if response.status_code != 200:
        raise IssuerDocumentUnavailable(f"GET {url} answered HTTP {response.status_code}")
    try:
        document = response.json()
    except ValueError as error:
        raise IssuerDocumentUnavailable(f"GET {url} did not return JSON") from error
    if not isinstance(document, dict):
        raise IssuerDocumentUnavailable(f"GET {url} did not return a JSON object")
    return document
