"""Who may read what the gateway says about its insides: `/readyz` details and `/metrics`.

Both name the connectors and tools behind the gateway, their failures and traffic: a map for
anyone probing it. A load balancer needs only the readiness status, so that stays public; the
details are served to requests carrying the operator's token (`[server] ops_token`), compared in
constant time so its bytes cannot be guessed one by one. Without a configured token nobody gets
them, and the refusal says how to configure one.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

Endpoint: TypeAlias = Callable[[Request], Awaitable[Response]]

_SCHEME = "bearer "
_HOW_TO_SEND = "send it as 'Authorization: Bearer <token>'"


class OpsAccess:
    """Checks the operator's token on requests for details about the gateway's state."""

    def __init__(self, token: SecretStr | None) -> None:
        self._token = token.get_secret_value().encode() if token is not None else None

    def refusal(self, request: Request, what: str) -> Response | None:
        """None when `request` may read `what`; otherwise the response saying why not and what to do."""
        if self._token is None:
            return _refused(
                403,
                f"reading {what} needs the ops token, and none is configured: set [server] ops_token in gateway.toml "
                '(e.g. ops_token = "${GATEWAY_OPS_TOKEN}", at least 32 characters), then ' + _HOW_TO_SEND,
            )
        header = request.headers.get("authorization", "")
        if header[: len(_SCHEME)].lower() != _SCHEME:
            return _refused(401, f"reading {what} needs the ops token ([server] ops_token): {_HOW_TO_SEND}")
        presented = header[len(_SCHEME) :].strip().encode()
        if not hmac.compare_digest(presented, self._token):
            return _refused(401, f"the ops token is wrong: reading {what} needs [server] ops_token; {_HOW_TO_SEND}")
        return None

    def protect(self, endpoint: Endpoint, what: str) -> Endpoint:
        """`endpoint`, answered only to requests carrying the ops token."""

        async def protected(request: Request) -> Response:
            refusal = self.refusal(request, what)
            return refusal if refusal is not None else await endpoint(request)

        return protected


def _refused(status: int, message: str) -> Response:
    headers = {"www-authenticate": 'Bearer realm="gateway-ops"'} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)
