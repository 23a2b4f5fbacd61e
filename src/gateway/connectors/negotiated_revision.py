"""Requests and results fitted to the protocol revision a backend session negotiated."""

from __future__ import annotations

from typing import Any

from mcp.client import ClientSession
from mcp.shared.dispatcher import CallOptions

from gateway.connectors.base import JsonObject
from gateway.mcp_sdk import later_revision_fields, request_stamp


class NegotiatedRevision:
    """Gives a call the shape the negotiated revision wants, and its result the keys that revision knows.

    Both follow the SDK session's own rules (its stamp for requests, its list of later revisions'
    result keys), so a call on the wire and a request through the SDK cannot drift apart.
    """

    def __init__(self, session: ClientSession) -> None:
        self._stamp = request_stamp(session)
        self.version: str = session.protocol_version or "2025-11-25"
        self._foreign: dict[str, frozenset[str]] = {}

    def request(
        self, request_id: int, method: str, params: JsonObject, *, progress: bool = False
    ) -> tuple[JsonObject, dict[str, str]]:
        """The wire message and the HTTP headers for one request; `params` is not mutated.

        With `progress`, the request id doubles as the progress token, so progress notifications
        find their call by the same number its answer will carry.
        """
        params = dict(params)
        meta = params.get("_meta")
        if meta is not None or progress:
            params["_meta"] = dict(meta or {})
            if progress:
                params["_meta"]["progressToken"] = request_id
        data: dict[str, Any] = {"method": method, "params": params}
        options: CallOptions = {}
        self._stamp(data, options)
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": data["params"]}
        return message, options.get("headers") or {}

    def result(self, method: str, raw: JsonObject) -> JsonObject:
        """Apply the SDK's two cheap result rules: floor a negative `ttlMs`, drop a later revision's keys."""
        ttl = raw.get("ttlMs")
        if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl < 0:
            raw["ttlMs"] = 0
        foreign = self._foreign.get(method)
        if foreign is None:
            foreign = self._foreign[method] = later_revision_fields(method, self.version)
        if foreign and not foreign.isdisjoint(raw):
            raw = {key: value for key, value in raw.items() if key not in foreign}
        return raw
