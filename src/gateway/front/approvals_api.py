"""The approvals JSON API, for approvers' tools and the web console: read held calls and decide them.

People decide, never agents: a request is authenticated with a user key (`Authorization: Bearer
agu_...`, `UserStore.authenticate`), and an agent's key (`agw_...`) is refused like no key at
all, with 401 and a Bearer challenge, so an agent cannot vote on calls by presenting its own
credential. Users signing in through OIDC come later; until then user keys are the only way in.

    GET  /api/v1/approvals?state=&limit=&cursor=     newest first, a page and its `next_cursor`
    GET  /api/v1/approvals/{id}                      everything an approver needs to decide
    POST /api/v1/approvals/{id}/approve              {"comment": "..."} (optional)
    POST /api/v1/approvals/{id}/deny                 {"comment": "..."} (required: say why)
    POST /api/v1/approvals/{id}/cancel               {"comment": "..."}; its user or an approver

The store enforces the approvers, the quorum and the separation of duties; this module only
says who is asking. Cancelling follows the CLI's rule: the user the call acts for may withdraw
it, and so may any of its approvers. What an approval is shown as never includes its sealed
arguments or the stored result bytes: people see the redacted arguments only.

Errors are `{"error": "<Type>", "detail": "<one line>"}`: 400 bad query or body, 401 no user
key, 403 not an approver (or self-approval, or not allowed to cancel), 404 unknown, 409 already
decided or lost a race (with the current `state`), 503 storage unreachable (with Retry-After) or
approvals not configured (the gateway has no sealing key, so nothing is ever held).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.approvals import Approval, ApprovalState, ApprovalStore, Vote
from gateway.errors import (
    ApprovalConflict,
    AuthenticationFailed,
    GatewayError,
    InvalidApprovalQuery,
    InvalidApprovalRequest,
    NotAnApprover,
)
from gateway.front.errors import http_status
from gateway.identity.users import User, UserStore

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, ApprovalStore, User], Awaitable[Response]]

PREFIX = "/api/v1/approvals"
#: Seconds a client is asked to wait while the database cannot be reached (503).
RETRY_AFTER_SECONDS = 5
CHALLENGE = 'Bearer realm="autonomy-gateway"'
#: Largest decision body read: a comment is a sentence or a paragraph, not a document.
MAX_BODY_BYTES = 16 * 1024
NOT_CONFIGURED = "approvals are not configured: the gateway has no sealing key, so no call is ever held"


def _now() -> datetime:
    return datetime.now(UTC)


def approvals_routes(
    store: ApprovalStore | None,
    users: UserStore,
    *,
    clock: Callable[[], datetime] = _now,
) -> list[Route]:
    """The `/api/v1/approvals` routes; with no `store` (no sealing key) each answers 503 once authenticated."""

    def guarded(handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                user = await authenticate_user(request, users)
                if store is None:
                    return json_response({"error": "ApprovalsNotConfigured", "detail": NOT_CONFIGURED}, 503)
                return await handler(request, store, user)
            except ApprovalConflict as error:
                return await conflict(error, store, request.path_params.get("approval_id"))
            except GatewayError as error:
                return error_response(error)

        return endpoint

    async def conflict(error: ApprovalConflict, store: ApprovalStore | None, approval_id: str | None) -> Response:
        """409 with the state the approval is in now, read again when the vote gave up after losing races."""
        state = error.state
        if state is None and store is not None and approval_id is not None:
            try:
                state = (await store.get(approval_id)).state
            except GatewayError:
                state = None
        body = {"error": type(error).__name__, "detail": _one_line(str(error)), "state": state}
        return json_response(body, 409)

    async def list_approvals(request: Request, store: ApprovalStore, user: User) -> Response:
        params = request.query_params
        try:
            limit = int(params.get("limit", "50"))
        except ValueError:
            raise InvalidApprovalQuery("limit must be a whole number") from None
        try:
            state = ApprovalState(params["state"]) if params.get("state") else None
        except ValueError:
            known = ", ".join(state.value for state in ApprovalState)
            raise InvalidApprovalQuery(f"state must be one of {known}") from None
        page = await store.list(state=state, limit=limit, cursor=params.get("cursor") or None)
        now = clock()
        approvals = [approval_json(a, await store.votes(a.id), now) for a in page.approvals]
        return json_response({"approvals": approvals, "next_cursor": page.next_cursor})

    async def one_approval(request: Request, store: ApprovalStore, user: User) -> Response:
        approval = await store.get(request.path_params["approval_id"])
        return json_response(approval_json(approval, await store.votes(approval.id), clock()))

    def deciding(approve: bool) -> Handler:
        async def decide(request: Request, store: ApprovalStore, user: User) -> Response:
            comment = await _comment(request, required=not approve)
            approval = await store.vote(
                request.path_params["approval_id"], user=user.name, roles=user.roles, approve=approve, comment=comment
            )
            return json_response(approval_json(approval, await store.votes(approval.id), clock()))

        return decide

    async def cancel(request: Request, store: ApprovalStore, user: User) -> Response:
        comment = await _comment(request, required=True)
        approval = await store.get(request.path_params["approval_id"])
        # The CLI's rule: the user the call acts for withdraws it, or one of the people who would decide it.
        if user.name != approval.user and not approval.approver_for(user.name, user.roles):
            raise NotAnApprover(
                f"{user.name} is neither the user approval {approval.id} acts for nor among its approvers "
                f"({', '.join(approval.approvers)}), so cannot cancel it"
            )
        cancelled = await store.cancel(approval.id, actor=user.name, comment=comment)
        return json_response(approval_json(cancelled, await store.votes(cancelled.id), clock()))

    return [
        Route(PREFIX, guarded(list_approvals), methods=["GET"]),
        Route(PREFIX + "/{approval_id}", guarded(one_approval), methods=["GET"]),
        Route(PREFIX + "/{approval_id}/approve", guarded(deciding(True)), methods=["POST"]),
        Route(PREFIX + "/{approval_id}/deny", guarded(deciding(False)), methods=["POST"]),
        Route(PREFIX + "/{approval_id}/cancel", guarded(cancel), methods=["POST"]),
    ]


async def _comment(request: Request, *, required: bool) -> str | None:
    """The `comment` of a decision's JSON body (an empty body has none); `required` for a denial or cancellation."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise InvalidApprovalRequest(f"the body is larger than {MAX_BODY_BYTES} bytes")
    body: Any = {}
    if raw.strip():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidApprovalRequest('the body must be JSON: {"comment": "..."}') from None
    if not isinstance(body, dict):
        raise InvalidApprovalRequest('the body must be a JSON object: {"comment": "..."}')
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise InvalidApprovalRequest("comment must be a string")
    if comment is not None and not comment.strip():
        comment = None
    if required and comment is None:
        raise InvalidApprovalRequest("a comment is required: say why, for the agent's user and the audit log")
    return comment


async def authenticate_user(request: Request, users: UserStore) -> User:
    """The person a request's bearer user key names; an agent's key, or none, is `AuthenticationFailed`."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise AuthenticationFailed("a user key is required: Authorization: Bearer agu_...")
    return await users.authenticate(credential.strip())


def approval_json(approval: Approval, votes: tuple[Vote, ...], now: datetime) -> dict[str, Any]:
    """An approval as approvers see it, as `gateway approvals show` does: never the sealed arguments or result."""
    return {
        "id": approval.id,
        "state": approval.state.value,
        "agent": approval.agent,
        "user": approval.user,
        "roles": list(approval.roles),
        "tool": approval.tool,
        "connector": approval.connector,
        "original_tool": approval.original_tool,
        "arguments": approval.redacted_arguments,
        "arguments_digest": approval.arguments_digest,
        "reasoning": approval.reasoning,
        "workflow": approval.workflow,
        "reasons": list(approval.reasons),
        "policy_ids": list(approval.policy_ids),
        "policy_version": approval.policy_version,
        "approvers": list(approval.approvers),
        "quorum": approval.quorum,
        "approvals": sum(1 for vote in votes if vote.approve),
        "votes": [
            {
                "user": vote.user,
                "roles": list(vote.roles),
                "approve": vote.approve,
                "comment": vote.comment,
                "time": _when(vote.time),
            }
            for vote in votes
        ],
        "created_at": _when(approval.created_at),
        "expires_at": _when(approval.expires_at),
        "seconds_left": _seconds_left(approval, now),
        "escalate_at": _when(approval.escalate_at),
        "escalate_to": list(approval.escalate_to),
        "escalated_at": _when(approval.escalated_at),
        "decided_at": _when(approval.decided_at),
        "executed_at": _when(approval.executed_at),
        "finished_at": _when(approval.finished_at),
        "result_truncated": approval.result_truncated,
        "version": approval.version,
    }


def _seconds_left(approval: Approval, now: datetime) -> int | None:
    """Whole seconds left to decide a pending approval (0 once past its expiry); None once it is not pending."""
    if approval.state is not ApprovalState.PENDING:
        return None
    return max(0, int((approval.expires_at - now).total_seconds()))


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def error_response(error: GatewayError) -> Response:
    """The one-line JSON error for `error`, with a Bearer challenge on 401 and Retry-After on 503."""
    status = http_status(error)
    headers = None
    if status == 401:
        headers = {"WWW-Authenticate": CHALLENGE}
    elif status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}  # the outage is expected to pass
    return json_response({"error": type(error).__name__, "detail": _one_line(str(error))}, status, headers)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)
