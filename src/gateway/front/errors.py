"""The one table that turns gateway errors into what a client receives.

Each category of the error tree (`gateway.errors`) has a shape here: its JSON-RPC code, its HTTP
status where an answer is not JSON-RPC, and whether a `tools/call` reports it as a tool result.
An error takes the shape of the nearest class in its MRO that the table names, as Starlette's
exception handlers do, so a new leaf needs no new line.

Failures an agent can act on during a tool call (the backend is down, too slow, the arguments
break a limit) come back as a tool result with `isError: true`, so the model reads what happened
and what to do instead of its framework raising. Protocol mistakes (an unknown tool, resource or
prompt) are JSON-RPC errors, as the MCP spec asks.
"""

from __future__ import annotations

from dataclasses import dataclass

import mcp_types as types
from mcp.shared.exceptions import MCPError

from gateway.connectors.base import JsonObject
from gateway.errors import (
    AccessDenied,
    ApprovalConflict,
    ApprovalFailure,
    ApprovalRefused,
    AuditFailure,
    AuthenticationFailed,
    BackendError,
    BackendFailure,
    BackendTimeout,
    BodyTooLarge,
    CallHeld,
    DuplicateCall,
    GatewayError,
    GatewayNotReady,
    IdempotencyRecordRunning,
    InvalidAnswer,
    InvalidApprovalQuery,
    InvalidApprovalRequest,
    InvalidArguments,
    InvalidAuditQuery,
    NotAnApprover,
    RecordLocked,
    RequestRejected,
    SelfApproval,
    StorageFailure,
    ToolUnderReview,
    UnknownApproval,
    UnknownIdempotencyRecord,
    UnknownResource,
    UnknownTarget,
)

#: The MCP spec's code for a resource that does not exist.
RESOURCE_NOT_FOUND = -32002
#: A policy denied the request: the server-error range, documented in the README.
POLICY_DENIED = -32003
#: No valid access policy set is loaded (the gateway is not ready): the server-error range, documented in the README.
GATEWAY_NOT_READY = -32004

ERROR_META_KEY = "io.autonomy-gateway/error"


@dataclass(frozen=True, slots=True)
class ErrorShape:
    """How one category of errors looks on the wire."""

    code: int
    status: int
    #: A `tools/call` answers it as a tool result with `isError: true`, for the model to act on.
    tool_result: bool = False


_SHAPES: dict[type[GatewayError], ErrorShape] = {
    GatewayError: ErrorShape(types.INTERNAL_ERROR, 500),
    RequestRejected: ErrorShape(types.INVALID_REQUEST, 400),
    BodyTooLarge: ErrorShape(types.INVALID_REQUEST, 413),
    UnknownTarget: ErrorShape(types.INVALID_PARAMS, 404),
    UnknownResource: ErrorShape(RESOURCE_NOT_FOUND, 404),
    InvalidArguments: ErrorShape(types.INVALID_PARAMS, 400, tool_result=True),
    GatewayNotReady: ErrorShape(GATEWAY_NOT_READY, 503),
    # Said to the model as a tool result: it can tell its user that an admin must review the tool.
    ToolUnderReview: ErrorShape(types.INVALID_REQUEST, 409, tool_result=True),
    AccessDenied: ErrorShape(POLICY_DENIED, 403),
    # Said to the model as a tool result: it can tell its user who must decide, and try again later.
    ApprovalRefused: ErrorShape(POLICY_DENIED, 403, tool_result=True),
    CallHeld: ErrorShape(POLICY_DENIED, 202, tool_result=True),
    AuthenticationFailed: ErrorShape(types.INVALID_REQUEST, 401),
    BackendFailure: ErrorShape(types.INTERNAL_ERROR, 502, tool_result=True),
    BackendTimeout: ErrorShape(types.REQUEST_TIMEOUT, 504, tool_result=True),
    # The backend's own JSON-RPC error goes back as it came, with the backend's code.
    BackendError: ErrorShape(types.INTERNAL_ERROR, 502),
    # Said to the model as a tool result: it learns who holds the record, and that it may retry later.
    RecordLocked: ErrorShape(types.INTERNAL_ERROR, 409, tool_result=True),
    AuditFailure: ErrorShape(types.INTERNAL_ERROR, 500, tool_result=True),
    InvalidAuditQuery: ErrorShape(types.INVALID_PARAMS, 400),
    StorageFailure: ErrorShape(types.INTERNAL_ERROR, 503, tool_result=True),
    ApprovalFailure: ErrorShape(types.INTERNAL_ERROR, 500),
    UnknownApproval: ErrorShape(types.INVALID_PARAMS, 404),
    ApprovalConflict: ErrorShape(types.INVALID_REQUEST, 409),
    NotAnApprover: ErrorShape(POLICY_DENIED, 403),
    SelfApproval: ErrorShape(POLICY_DENIED, 403),
    InvalidApprovalQuery: ErrorShape(types.INVALID_PARAMS, 400),
    InvalidApprovalRequest: ErrorShape(types.INVALID_PARAMS, 400),
    InvalidAnswer: ErrorShape(types.INVALID_PARAMS, 400),
    # Said to the model as a tool result: it can wait and repeat, or tell its user to have the backend checked.
    DuplicateCall: ErrorShape(types.INVALID_REQUEST, 409, tool_result=True),
    UnknownIdempotencyRecord: ErrorShape(types.INVALID_PARAMS, 404),
    IdempotencyRecordRunning: ErrorShape(types.INVALID_REQUEST, 409),
}


def shape_of(error: GatewayError) -> ErrorShape:
    """The shape of the nearest category of `error` in the table (`GatewayError` at the latest)."""
    for cls in type(error).__mro__:
        shape = _SHAPES.get(cls)
        if shape is not None:
            return shape
    return _SHAPES[GatewayError]


def http_status(error: GatewayError) -> int:
    return shape_of(error).status


def to_mcp_error(error: GatewayError) -> MCPError:
    """The JSON-RPC error for `error`; the type is named, policy ids never are (they stay in the audit log)."""
    if isinstance(error, BackendError):
        return MCPError(code=error.code, message=str(error), data=error.data)
    return MCPError(code=shape_of(error).code, message=str(error), data={"type": type(error).__name__})


def tool_call_answer(error: GatewayError) -> JsonObject | MCPError:
    """What a `tools/call` that failed with `error` answers: a tool result, or a JSON-RPC error."""
    if not shape_of(error).tool_result:
        return to_mcp_error(error)
    return {
        "content": [{"type": "text", "text": str(error)}],
        "isError": True,
        "_meta": {ERROR_META_KEY: {"type": type(error).__name__}},
    }
