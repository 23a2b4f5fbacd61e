"""The audit log's JSON API, behind the console and scripts: search, one call, verify.

Only principals holding one of the admin roles may read the log: it shows every agent's
arguments (redacted) and reasoning. No credential: 401 with a Bearer challenge; the wrong
roles: 403. How a request is authenticated is the caller's business (`authenticate`), so the
same routes serve API keys, OIDC tokens or a console session.

    GET /api/audit/calls?agent=&user=&tool=&decision=&outcome=&since=&until=&workflow=&text=&limit=&cursor=
    GET /api/audit/calls/{call_id}
    GET /api/audit/verify
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.audit import get_call, parse_time, search, verify
from gateway.errors import GatewayError, InvalidAuditQuery
from gateway.front.errors import http_status
from gateway.identity.principal import Principal
from gateway.storage.database import Database

Authenticate = Callable[[Request], Awaitable[Principal]]
Endpoint = Callable[[Request], Awaitable[Response]]

_FILTERS = ("agent", "user", "tool", "decision", "outcome", "workflow")
#: Seconds a client is asked to wait while the database cannot be reached (503).
_RETRY_AFTER_SECONDS = 5


def audit_routes(
    db: Database,
    authenticate: Authenticate,
    admin_roles: frozenset[str],
    *,
    public_key: Ed25519PublicKey | None = None,
) -> list[Route]:
    """The `/api/audit/...` routes, each guarded by `authenticate` and `admin_roles`."""

    def guarded(handler: Callable[[Request], Awaitable[Any]]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                principal = await authenticate(request)
                if admin_roles.isdisjoint(principal.roles):
                    return _json({"error": "forbidden", "detail": "reading the audit log needs an admin role"}, 403)
                body = await handler(request)
            except GatewayError as error:
                status = http_status(error)
                headers = None
                if status == 401:
                    headers = {"WWW-Authenticate": 'Bearer realm="autonomy-gateway"'}
                elif status == 503:
                    headers = {"Retry-After": str(_RETRY_AFTER_SECONDS)}  # the outage is expected to pass
                return _json({"error": type(error).__name__, "detail": str(error)}, status, headers)
            if body is None:
                return _json({"error": "not_found", "detail": "no call with that id was recorded"}, 404)
            return _json(body)

        return endpoint

    async def search_calls(request: Request) -> dict[str, Any]:
        params = request.query_params
        try:
            limit = int(params.get("limit", "50"))
        except ValueError:
            raise InvalidAuditQuery("limit must be a whole number") from None
        page = await search(
            db,
            **{name: params[name] for name in _FILTERS if params.get(name)},
            since=parse_time(params["since"]) if params.get("since") else None,
            until=parse_time(params["until"]) if params.get("until") else None,
            text_in_reasoning=params.get("text") or None,
            limit=limit,
            cursor=params.get("cursor") or None,
            scan_limit=None,  # pages stay full, as the API has always answered
        )
        return {"calls": [call.to_json() for call in page.calls], "next_cursor": page.next_cursor}

    async def one_call(request: Request) -> dict[str, Any] | None:
        call = await get_call(db, request.path_params["call_id"])
        return call.to_json() if call is not None else None

    async def verify_log(request: Request) -> dict[str, Any]:
        report = await verify(db, public_key=public_key)
        return report.to_json()

    return [
        Route("/api/audit/calls", guarded(search_calls), methods=["GET"]),
        Route("/api/audit/calls/{call_id}", guarded(one_call), methods=["GET"]),
        Route("/api/audit/verify", guarded(verify_log), methods=["GET"]),
    ]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)
