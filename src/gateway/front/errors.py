"""The one table that turns gateway errors into what an MCP client receives.

Failures an agent can act on during a tool call (the backend is down, too slow, the
arguments break a limit) come back as a tool result with `isError: true`, so the model reads
what happened and what to do instead of its framework raising. Protocol mistakes (an
unknown tool, resource or prompt) are JSON-RPC errors, as the MCP spec asks.
"""

from __future__ import annotations

import mcp_types as types
from mcp.shared.exceptions import MCPError

from gateway.connectors.base import JsonObject
from gateway.errors import (
    AuditUnavailable,
    AuthenticationFailed,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    GatewayError,
    GatewayNotReady,
    InvalidArguments,
    PolicyDenied,
    StorageUnavailable,
    UnknownPrompt,
    UnknownResource,
    UnknownTool,
)

#: JSON-RPC error code per error class; `RESOURCE_NOT_FOUND` is the MCP spec's -32002.
_RESOURCE_NOT_FOUND = -32002
#: A policy denied the request: the server-error range, documented in the README.
POLICY_DENIED = -32003
#: No valid access policy set is loaded (the gateway is not ready): the server-error range, documented in the README.
GATEWAY_NOT_READY = -32004
_ERROR_CODES: dict[type[GatewayError], int] = {
    PolicyDenied: POLICY_DENIED,
    GatewayNotReady: GATEWAY_NOT_READY,
    UnknownTool: types.INVALID_PARAMS,
    UnknownPrompt: types.INVALID_PARAMS,
    UnknownResource: _RESOURCE_NOT_FOUND,
    InvalidArguments: types.INVALID_PARAMS,
    AuthenticationFailed: types.INVALID_REQUEST,
    BackendUnavailable: types.INTERNAL_ERROR,
    BackendTimeout: types.REQUEST_TIMEOUT,
    StorageUnavailable: types.INTERNAL_ERROR,
    AuditUnavailable: types.INTERNAL_ERROR,
}

#: Errors that a tools/call reports as a tool result the model can read and act on.
_TOOL_ERRORS: tuple[type[GatewayError], ...] = (
    BackendUnavailable,
    BackendTimeout,
    InvalidArguments,
    StorageUnavailable,
    AuditUnavailable,
)

ERROR_META_KEY = "io.autonomy-gateway/error"


def to_mcp_error(exc: GatewayError) -> MCPError:
    if isinstance(exc, BackendError):
        return MCPError(code=exc.code, message=str(exc), data=exc.data)
    code = next((c for cls, c in _ERROR_CODES.items() if isinstance(exc, cls)), types.INTERNAL_ERROR)
    # Policy ids stay in the gateway's logs and audit: an agent learns the reason, not the rule book.
    return MCPError(code=code, message=str(exc), data={"type": type(exc).__name__})


def is_tool_error(exc: GatewayError) -> bool:
    return isinstance(exc, _TOOL_ERRORS)


def tool_error_result(exc: GatewayError) -> JsonObject:
    return {
        "content": [{"type": "text", "text": str(exc)}],
        "isError": True,
        "_meta": {ERROR_META_KEY: {"type": type(exc).__name__}},
    }
