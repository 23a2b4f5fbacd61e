"""A backend's result made fit for the agent's protocol revision, on every path that answers one."""

from __future__ import annotations

from collections.abc import Mapping

from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.connectors.base import JsonObject

_SERVER_INFO_META_KEY = "io.modelcontextprotocol/serverInfo"
_MODERN_ONLY_RESULT_KEYS = ("resultType", "ttlMs", "cacheScope")


def for_client(result: JsonObject, protocol_version: str, *, cacheable: bool = False) -> JsonObject:
    """Fit a backend's result to the client's revision; the content itself is never touched."""
    adjusted = dict(result)
    meta = adjusted.get("_meta")
    if isinstance(meta, Mapping) and _SERVER_INFO_META_KEY in meta:
        # The backend's identity stamp is not the gateway's; the SDK adds the gateway's own.
        stripped = {k: v for k, v in meta.items() if k != _SERVER_INFO_META_KEY}
        if stripped:
            adjusted["_meta"] = stripped
        else:
            del adjusted["_meta"]
    if protocol_version in MODERN_PROTOCOL_VERSIONS:
        adjusted.setdefault("resultType", "complete")
        if cacheable:
            # What one agent may read another may not: never let a shared cache serve it.
            adjusted.setdefault("ttlMs", 0)
            adjusted["cacheScope"] = "private"
    else:
        for key in _MODERN_ONLY_RESULT_KEYS:
            adjusted.pop(key, None)
    return adjusted
