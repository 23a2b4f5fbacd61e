"""The approvals JSON API, for approvers' tools and the web console: read held calls and decide them.

People decide, never agents: a request is authenticated with a user key (`Authorization: Bearer
agu_...`) or, when `[auth.people]` is configured, a sign-in token from the organisation's identity
provider (`Authorization: Bearer <JWT>`, `PeopleAuthenticator`). An agent's key (`agw_...`) or an
agent's token is refused like no credential at all, with 401, a Bearer challenge and a reason
saying it is an agent's, so an agent cannot vote on calls by presenting its own credential.

    GET  /api/v1/approvals?state=&limit=&cursor=     newest first, a page and its `next_cursor`
    GET  /api/v1/approvals/{id}                      everything an approver needs to decide
    POST /api/v1/approvals/{id}/approve              {"comment": "..."} (optional)
    POST /api/v1/approvals/{id}/deny                 {"comment": "..."} (required: say why)
    POST /api/v1/approvals/{id}/cancel               {"comment": "..."}; its user or an approver
    POST /api/v1/approvals/{id}/answer               {"option": "..."} and/or {"text": "..."}: a question's answer
    GET  /api/v1/approvals/events                    Server-Sent Events: every change from now on
    GET  /api/v1/openapi.json                        the OpenAPI document of these routes (no key needed)

The store enforces the approvers, the quorum and the separation of duties; this module only
says who is asking. Cancelling follows the CLI's rule: the user the call acts for may withdraw
it, and so may any of its approvers. What an approval is shown as never includes its sealed
arguments or the stored result bytes: people see the redacted arguments only.

Errors are `{"error": "<Type>", "detail": "<one line>"}`: 400 bad query or body, 401 no user
key, 403 not an approver (or self-approval, or not allowed to cancel), 404 unknown, 409 already
decided or lost a race (with the current `state`), 503 storage unreachable (with Retry-After) or
approvals not configured (the gateway has no sealing key, so nothing is ever held).

The event stream (`event: approval`, `data:` the approval as `GET /{id}` shows it plus `event`:
created, voted, escalated, decided, expired, executing, succeeded or failed) starts at the moment
of connection and sends a keep-alive comment every 15 s. Changes arrive two ways:

- committed by this process (a vote through this API, a call held or run by this gateway, its
  sweeper's expiries and escalations): at once, from the store's change listener (`ApprovalFeed`);
- committed by another process (the CLI, other replicas): within `poll` seconds, by reading the
  open approvals and the newest page and comparing each row's `version` with the last one seen.

Each connection keeps the versions it has sent, so a change heard both ways is sent once, and the
event's name is worked out from the row (and the version seen before it) the same way for both.
A change that begins and ends between two polls in another process may be seen only at its end
state. A client that reads too slowly to keep up has its stream closed and reconnects.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.approvals import Approval, ApprovalState, ApprovalStore, Vote
from gateway.approvals.model import OPEN_STATES
from gateway.approvals.store import MAX_LIST_LIMIT
from gateway.errors import (
    ApprovalConflict,
    AuthenticationFailed,
    GatewayError,
    InvalidApprovalQuery,
    InvalidApprovalRequest,
    NotAnApprover,
    UnknownApproval,
)
from gateway.front.errors import http_status
from gateway.identity.users import User

logger = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, ApprovalStore, User], Awaitable[Response]]


class Approvers(Protocol):
    """Who may use the API: `PeopleAuthenticator` (user keys and sign-in tokens), or a `UserStore` (keys only)."""

    async def authenticate(self, presented: str) -> User:
        """The person a bearer credential proves, or `AuthenticationFailed` saying why not."""
        ...


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
    people: Approvers,
    *,
    feed: ApprovalFeed | None = None,
    clock: Callable[[], datetime] = _now,
) -> list[Route]:
    """The `/api/v1/approvals` routes; with no `store` (no sealing key) each answers 503 once authenticated.

    `people` says who a request's bearer credential is; only people get through.
    `feed` carries this process's changes to the event stream; without one the routes make their own.
    """
    if feed is None and store is not None:
        feed = ApprovalFeed(store)

    def guarded(handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                user = await authenticate_user(request, people)
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

    async def answer(request: Request, store: ApprovalStore, user: User) -> Response:
        option, text = await _answer_body(request)
        answered = await store.answer(
            request.path_params["approval_id"], user=user.name, roles=user.roles, option=option, text=text
        )
        return json_response(approval_json(answered, await store.votes(answered.id), clock()))

    async def events(request: Request, store: ApprovalStore, user: User) -> Response:
        assert feed is not None  # made above whenever there is a store
        return EventStream(store, feed, clock)

    return [
        Route(PREFIX, guarded(list_approvals), methods=["GET"]),
        Route(PREFIX + "/events", guarded(events), methods=["GET"]),
        Route(PREFIX + "/{approval_id}", guarded(one_approval), methods=["GET"]),
        Route(PREFIX + "/{approval_id}/approve", guarded(deciding(True)), methods=["POST"]),
        Route(PREFIX + "/{approval_id}/deny", guarded(deciding(False)), methods=["POST"]),
        Route(PREFIX + "/{approval_id}/cancel", guarded(cancel), methods=["POST"]),
        Route(PREFIX + "/{approval_id}/answer", guarded(answer), methods=["POST"]),
        # It describes the routes and holds no data, so tools may fetch it before they have a key.
        Route(OPENAPI_PATH, _openapi, methods=["GET"]),
    ]


async def _openapi(request: Request) -> Response:
    return json_response(OPENAPI)


OPENAPI_PATH = "/api/v1/openapi.json"


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _approval_answer(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Approval"}}},
    }


_ID = {"name": "approval_id", "in": "path", "required": True, "schema": {"type": "string"}}
_STATES = [state.value for state in ApprovalState]
_TIME = {"type": ["string", "null"], "format": "date-time"}
_REFUSED = {
    "401": _error(
        "no credential, one that cannot be verified (expired, forged, for another audience), an agent's key or "
        "token, or a disabled user (with a Bearer challenge)"
    ),
    "503": _error("storage unreachable (with Retry-After), or approvals not configured"),
}


def _decision(summary: str, comment: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [_ID],
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Decision"}}},
            "description": comment,
        },
        "responses": {
            "200": _approval_answer("the approval after the change"),
            "400": _error("the body is not JSON, or a required comment is missing"),
            "403": _error("not an approver, self-approval, or not allowed to cancel"),
            "404": _error("no approval has that id"),
            "409": {
                "description": "already decided, or another change came first",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Conflict"}}},
            },
            **_REFUSED,
        },
    }


#: The document `GET /api/v1/openapi.json` serves: hand-written beside the routes it describes, and
#: tests check that it names every route, so the two cannot drift apart unnoticed.
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Autonomy Gateway approvals API",
        "version": "1",
        "description": "People reading and deciding the tool calls approval policies hold. Authenticate with a "
        "user key (Authorization: Bearer agu_...) or, where the gateway is configured with [auth.people], a sign-in "
        "token from the organisation's identity provider (Authorization: Bearer <JWT>); agents' keys and tokens are "
        "refused.",
    },
    "components": {
        "securitySchemes": {
            "userKey": {"type": "http", "scheme": "bearer", "description": "a user key, agu_..."},
            "personToken": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "a person's token from the identity provider [auth.people] names, issued for one of "
                "its audiences (never an agent's token); the person is its user_claim, their roles its roles_claims",
            },
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "detail"],
                "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
            },
            "Conflict": {
                "allOf": [
                    {"$ref": "#/components/schemas/Error"},
                    {"properties": {"state": {"enum": [*_STATES, None]}}},
                ]
            },
            "Decision": {"type": "object", "properties": {"comment": {"type": "string"}}},
            "Vote": {
                "type": "object",
                "properties": {
                    "user": {
                        "type": "string",
                        "description": "who voted: a user's name, or a signed-in person's id (the token's user_claim)",
                    },
                    "roles": {"type": "array", "items": {"type": "string"}},
                    "approve": {"type": "boolean"},
                    "comment": {"type": ["string", "null"]},
                    "time": {"type": "string", "format": "date-time"},
                },
            },
            "Approval": {
                "type": "object",
                "description": "Never the exact (sealed) arguments nor the call's result: only the redacted arguments.",
                "properties": {
                    "id": {"type": "string"},
                    "state": {"enum": _STATES},
                    "agent": {"type": "string"},
                    "user": {"type": ["string", "null"], "description": "the user the agent acts for"},
                    "roles": {"type": "array", "items": {"type": "string"}, "description": "the agent's roles"},
                    "tool": {"type": "string"},
                    "connector": {"type": "string"},
                    "original_tool": {"type": "string"},
                    "arguments": {"description": "the call's arguments, redacted"},
                    "arguments_digest": {"type": "string"},
                    "reasoning": {"type": ["string", "null"]},
                    "workflow": {"type": ["string", "null"]},
                    "reasons": {"type": "array", "items": {"type": "string"}},
                    "policy_ids": {"type": "array", "items": {"type": "string"}},
                    "policy_version": {"type": ["string", "null"]},
                    "approvers": {"type": "array", "items": {"type": "string"}},
                    "quorum": {"type": "integer"},
                    "approvals": {"type": "integer", "description": "approving votes so far"},
                    "votes": {"type": "array", "items": {"$ref": "#/components/schemas/Vote"}},
                    "created_at": _TIME,
                    "expires_at": _TIME,
                    "seconds_left": {"type": ["integer", "null"], "description": "to decide; null once not pending"},
                    "escalate_at": _TIME,
                    "escalate_to": {"type": "array", "items": {"type": "string"}},
                    "escalated_at": _TIME,
                    "decided_at": _TIME,
                    "executed_at": _TIME,
                    "finished_at": _TIME,
                    "result_truncated": {"type": "boolean"},
                    "ended_by": {
                        "type": ["string", "null"],
                        "description": "who ended it without a vote: a cancellation, or an admin's denial",
                    },
                    "end_comment": {"type": ["string", "null"], "description": "what they said"},
                    "version": {"type": "integer", "description": "counts every change"},
                    "kind": {"enum": ["call", "question"], "description": "a held call, or an agent's question"},
                    "question": {
                        "type": ["object", "null"],
                        "description": "a question's text, options (choose one) and urgency (low, normal, high)",
                    },
                    "answer": {
                        "type": ["object", "null"],
                        "description": "a question's answer: answer, option, answered_by, answered_at",
                    },
                },
            },
        },
    },
    "security": [{"userKey": []}, {"personToken": []}],
    "paths": {
        PREFIX: {
            "get": {
                "summary": "approvals, newest first",
                "parameters": [
                    {"name": "state", "in": "query", "schema": {"enum": _STATES}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "one page; next_cursor fetches the next (null: the last)",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "approvals": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Approval"},
                                        },
                                        "next_cursor": {"type": ["string", "null"]},
                                    },
                                }
                            }
                        },
                    },
                    "400": _error("a bad state, limit or cursor"),
                    **_REFUSED,
                },
            }
        },
        PREFIX + "/events": {
            "get": {
                "summary": "Server-Sent Events of approval changes from the moment of connection",
                "description": "Each event is `event: approval` with `data:` the Approval plus `event` (created, "
                "voted, escalated, decided, expired, executing, succeeded, failed); a keep-alive comment every 15 s.",
                "responses": {"200": {"description": "the stream", "content": {"text/event-stream": {}}}, **_REFUSED},
            }
        },
        PREFIX + "/{approval_id}": {
            "get": {
                "summary": "everything an approver needs to decide one held call",
                "parameters": [_ID],
                "responses": {
                    "200": _approval_answer("the approval"),
                    "404": _error("no approval has that id"),
                    **_REFUSED,
                },
            }
        },
        PREFIX + "/{approval_id}/approve": {
            "post": _decision("vote to approve; the call may run once the quorum is reached", "an optional comment")
        },
        PREFIX + "/{approval_id}/deny": {"post": _decision("deny: one approver's denial decides", "comment required")},
        PREFIX + "/{approval_id}/cancel": {
            "post": _decision("withdraw it: the user it acts for, or one of its approvers", "comment required")
        },
        PREFIX + "/{approval_id}/answer": {
            "post": {
                "summary": "answer an agent's question: one of its options, or in words when it has none",
                "parameters": [_ID],
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"option": {"type": "string"}, "text": {"type": "string"}},
                            }
                        }
                    }
                },
                "responses": {
                    "200": _approval_answer("the question, answered"),
                    "400": _error("not one of its options, no answer, or not a question"),
                    "404": _error("no approval has that id"),
                    "409": _error("already answered, expired or cancelled"),
                    **_REFUSED,
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "summary": "this document",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
            }
        },
    },
}


class ApprovalFeed:
    """This process's committed changes, fanned out to every open event stream.

    Registered with the store as a change listener, so a change reaches the streams the moment it
    is committed. `poll` is how often each stream also reads the table for changes that other
    processes made, `keep_alive` how often an idle stream sends a comment (so proxies and browsers
    keep it open), `buffer` how many changes a stream may fall behind before it is closed.
    """

    def __init__(self, store: ApprovalStore, *, poll: float = 1.0, keep_alive: float = 15.0, buffer: int = 256) -> None:
        if poll <= 0 or keep_alive <= 0 or buffer < 1:
            raise ValueError("poll and keep_alive must be positive and buffer at least 1")
        self.poll = poll
        self.keep_alive = keep_alive
        self._buffer = buffer
        self._streams: set[MemoryObjectSendStream[Approval]] = set()
        self._closed = False
        self._stop_listening = store.listen(self._committed)

    def _committed(self, approval: Approval) -> None:
        for stream in tuple(self._streams):
            try:
                stream.send_nowait(approval)
            except anyio.WouldBlock:
                # Too far behind: its client reconnects and starts afresh, instead of everyone waiting for it.
                logger.warning("an approvals event stream fell behind and was closed")
                self._streams.discard(stream)
                stream.close()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._streams.discard(stream)

    @contextmanager
    def subscribe(self) -> Iterator[MemoryObjectReceiveStream[Approval]]:
        """The changes committed here from now on; it ends when the feed closes (or the reader fell behind)."""
        send, receive = anyio.create_memory_object_stream[Approval](self._buffer)
        if self._closed:
            send.close()
        else:
            self._streams.add(send)
        try:
            yield receive
        finally:
            self._streams.discard(send)
            send.close()
            receive.close()

    def close(self) -> None:
        """End every open stream (the server is stopping) and stop listening to the store."""
        self._closed = True
        self._stop_listening()
        for stream in tuple(self._streams):
            stream.close()
        self._streams.clear()


def event_name(before: Approval | None, now: Approval) -> str:
    """What happened to reach `now`, given the version last seen (`before`, None when never seen)."""
    match now.state:
        case ApprovalState.PENDING:
            if now.version == 1:
                return "created"
            was_escalated = before.escalated_at is not None if before is not None else False
            return "escalated" if now.escalated_at is not None and not was_escalated else "voted"
        case ApprovalState.APPROVED | ApprovalState.DENIED | ApprovalState.CANCELLED:
            return "decided"
        case ApprovalState.EXPIRED:
            return "expired"
        case ApprovalState.ANSWERED:
            return "answered"
        case ApprovalState.EXECUTING:
            return "executing"
        case ApprovalState.SUCCEEDED:
            return "succeeded"
        case _:  # failed, or unknown: the gateway stopped while it ran (the state says which)
            return "failed"


#: How many of the newest approvals each poll reads, besides the open ones: rows made and ended between polls.
NEWEST_PAGE = 50


class _Seen:
    """The version of each approval one stream has sent (or found at its start), so nothing is sent twice."""

    def __init__(self, store: ApprovalStore) -> None:
        self._store = store
        self._known: dict[str, Approval] = {}

    def news(self, approval: Approval) -> tuple[Approval | None, Approval] | None:
        """(the version seen before, this one) when `approval` is newer than what was seen; then it counts as seen."""
        before = self._known.get(approval.id)
        if before is not None and before.version >= approval.version:
            return None
        self._known[approval.id] = approval
        return before, approval

    async def look(self) -> list[tuple[Approval | None, Approval]]:
        """Read the table for changes other processes made: the open approvals, the newest, and those that left."""
        current: dict[str, Approval] = {}
        for state in sorted(OPEN_STATES):
            page = await self._store.list(state=state, limit=MAX_LIST_LIMIT)
            current.update((approval.id, approval) for approval in page.approvals)
        newest = await self._store.list(limit=NEWEST_PAGE)
        current.update((approval.id, approval) for approval in newest.approvals)
        for approval_id, before in self._known.items():
            if approval_id not in current and before.state in OPEN_STATES:
                try:  # it left the open states since the last look: read how it ended
                    current[approval_id] = await self._store.get(approval_id)
                except UnknownApproval:
                    continue
        changes = [change for approval in current.values() if (change := self.news(approval)) is not None]
        # Only what a later look can still find changing is kept: ended approvals off the newest page never change.
        self._known = {approval_id: self._known[approval_id] for approval_id in current}
        changes.sort(key=lambda change: (change[1].created_at, change[1].id))
        return changes


class EventStream(Response):
    """`text/event-stream` of approval changes, from the moment of connection until the client goes away."""

    def __init__(self, store: ApprovalStore, feed: ApprovalFeed, clock: Callable[[], datetime]) -> None:
        super().__init__(
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},  # proxies must not hold events back
        )
        self._store = store
        self._feed = feed
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        finished = False
        async with anyio.create_task_group() as tasks:

            async def until_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tasks.cancel_scope.cancel()

            tasks.start_soon(until_disconnect)
            try:
                await self._pump(send)
                finished = True
            except OSError:
                pass  # the client went away mid-write
            tasks.cancel_scope.cancel()
        if finished:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, send: Send) -> None:
        async def write(text: str) -> None:
            await send({"type": "http.response.body", "body": text.encode(), "more_body": True})

        async def emit(change: tuple[Approval | None, Approval]) -> None:
            before, approval = change
            body = approval_json(approval, await self._store.votes(approval.id), self._clock())
            body["event"] = event_name(before, approval)
            await write(f"event: approval\ndata: {orjson.dumps(body).decode()}\n\n")

        with self._feed.subscribe() as local:
            seen = _Seen(self._store)
            await seen.look()  # what exists at the moment of connection is the starting point, not news
            await write(": connected\n\n")
            next_poll = anyio.current_time() + self._feed.poll
            next_ping = anyio.current_time() + self._feed.keep_alive
            while True:
                committed: Approval | None = None
                with anyio.move_on_after(max(0.0, min(next_poll, next_ping) - anyio.current_time())):
                    try:
                        committed = await local.receive()
                    except anyio.EndOfStream:
                        return
                if committed is not None and (change := seen.news(committed)) is not None:
                    await emit(change)
                if anyio.current_time() >= next_poll:
                    try:
                        for change in await seen.look():
                            await emit(change)
                    except (GatewayError, SQLAlchemyError) as error:  # the database is back by a later poll
                        logger.warning("approvals event stream: polling failed", extra={"error": str(error)})
                    next_poll = anyio.current_time() + self._feed.poll
                if anyio.current_time() >= next_ping:
                    await write(": keep-alive\n\n")
                    next_ping = anyio.current_time() + self._feed.keep_alive


async def _answer_body(request: Request) -> tuple[str | None, str | None]:
    """The `option` and `text` of an answer's JSON body; the store says whether they answer the question."""
    body = await _json_body(request, '{"option": "..."} or {"text": "..."}')
    option, text = body.get("option"), body.get("text")
    if (option is not None and not isinstance(option, str)) or (text is not None and not isinstance(text, str)):
        raise InvalidApprovalRequest("option and text must be strings")
    return option, text


async def _json_body(request: Request, shape: str) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise InvalidApprovalRequest(f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise InvalidApprovalRequest(f"the body must be JSON: {shape}") from None
    if not isinstance(body, dict):
        raise InvalidApprovalRequest(f"the body must be a JSON object: {shape}")
    return body


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


async def authenticate_user(request: Request, people: Approvers) -> User:
    """The person a request's bearer credential names; an agent's key or token, or none, is `AuthenticationFailed`."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise AuthenticationFailed(
            "a user key or a sign-in token is required: Authorization: Bearer agu_... (or Bearer <the IdP's token>)"
        )
    return await people.authenticate(credential.strip())


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
        "ended_by": approval.ended_by,
        "end_comment": approval.end_comment,
        "version": approval.version,
        "kind": approval.kind.value,
        "question": approval.question,
        "answer": approval.answer,
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
