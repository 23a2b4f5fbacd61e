"""Approvals: the inbox of held calls, one call's whole story, the decision, and the history.

Everything needed to decide is on one screen (who asks, for whom, what with which arguments,
why, which policy held it and why, who has voted, time left). Deciding posts a form, so it works
without JavaScript; the store enforces who may decide (listed approvers, never the requester or
the user it acts for, distinct people for a quorum), and its refusal is shown as it is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.approvals import Approval, ApprovalState, ApprovalStore
from gateway.console.access import Permission, Visitor
from gateway.console.guard import Guard
from gateway.console.pages.events import live_seen
from gateway.console.rendering import render
from gateway.console.services import ConsoleServices
from gateway.errors import ApprovalFailure, InvalidApprovalQuery
from gateway.front.approvals_api import approval_json

PAGE_SIZE = 50


def routes(services: ConsoleServices, guard: Guard) -> list[BaseRoute]:
    def store_or_none() -> ApprovalStore | None:
        return services.approvals

    async def inbox(request: Request, visitor: Visitor) -> Response:
        store = store_or_none()
        pending: list[dict[str, Any]] = []
        selected: dict[str, Any] | None = None
        if store is not None:
            page = await store.list(state=ApprovalState.PENDING, limit=PAGE_SIZE)
            now = datetime.now(UTC)
            pending = [await _shown(store, approval, now, visitor) for approval in page.approvals]
            wanted = request.query_params.get("id")
            selected = next((a for a in pending if a["id"] == wanted), pending[0] if pending else None)
        context = {
            "pending": pending,
            "selected": selected,
            "configured": store is not None,
            "live_seen": await live_seen(services),
        }
        fragment = request.headers.get("x-requested-with") == "console"
        template = "approvals_body.html" if fragment else "approvals.html"
        return render(request, template, context, visitor=visitor, section="approvals")

    async def one(request: Request, visitor: Visitor) -> Response:
        store = store_or_none()
        if store is None:
            return render(request, "missing.html", {"what": "approval"}, visitor=visitor, status_code=404)
        try:
            approval = await store.get(request.path_params["approval_id"])
        except ApprovalFailure:
            return render(request, "missing.html", {"what": "approval"}, visitor=visitor, status_code=404)
        shown = await _shown(store, approval, datetime.now(UTC), visitor)
        return render(request, "approval.html", {"approval": shown}, visitor=visitor, section="approvals")

    async def decide(request: Request, visitor: Visitor) -> Response:
        store = store_or_none()
        approval_id = request.path_params["approval_id"]
        form = await request.form()
        decision, comment = form.get("decision"), form.get("comment")
        comment = comment.strip() if isinstance(comment, str) and comment.strip() else None
        error: str | None = None
        if store is None:
            error = "This gateway holds no calls for approval."
        elif decision not in ("approve", "deny"):
            error = "Choose approve or deny."
        elif decision == "deny" and comment is None:
            error = "Say why you deny it: the agent and the people who asked are told your comment."
        else:
            try:
                await store.vote(
                    approval_id,
                    user=visitor.user.name,
                    roles=visitor.user.roles,
                    approve=decision == "approve",
                    comment=comment,
                )
            except ApprovalFailure as exc:
                error = str(exc)
            else:
                await services.audit.record_console_event(
                    "decide",
                    user=visitor.user.name,
                    via=visitor.session.via,
                    client_address=request.client.host if request.client else None,
                    target=approval_id,
                    comment=comment,
                    details={"decision": decision},
                )
        if request.headers.get("x-requested-with") == "console":
            status = 200 if error is None else 409
            return Response(error or "decided", status_code=status, media_type="text/plain")
        if error is not None:
            shown: dict[str, Any] | None = None
            if store is not None:
                try:
                    shown = await _shown(store, await store.get(approval_id), datetime.now(UTC), visitor)
                except ApprovalFailure:
                    shown = None
            if shown is None:
                return render(request, "missing.html", {"what": "approval"}, visitor=visitor, status_code=404)
            context = {"approval": shown, "error": error}
            return render(request, "approval.html", context, visitor=visitor, section="approvals", status_code=409)
        return RedirectResponse(f"/ui/approvals/{approval_id}?decided={decision}", status_code=303)

    async def answer(request: Request, visitor: Visitor) -> Response:
        """A person's answer to an agent's question: an option's button, or the words they wrote."""
        store = store_or_none()
        approval_id = request.path_params["approval_id"]
        form = await request.form()
        option, text = form.get("option"), form.get("text")
        error: str | None = None
        if store is None:
            error = "This gateway holds no questions."
        else:
            try:
                await store.answer(
                    approval_id,
                    user=visitor.user.name,
                    roles=visitor.user.roles,
                    option=option if isinstance(option, str) else None,
                    text=text if isinstance(text, str) else None,
                )
            except ApprovalFailure as exc:
                error = str(exc)
            else:
                await services.audit.record_console_event(
                    "answer",
                    user=visitor.user.name,
                    via=visitor.session.via,
                    client_address=request.client.host if request.client else None,
                    target=approval_id,
                    comment=text if isinstance(text, str) and text.strip() else None,
                    details={"option": option if isinstance(option, str) else None},
                )
        if error is None:
            return RedirectResponse(f"/ui/approvals/{approval_id}?decided=answer", status_code=303)
        shown: dict[str, Any] | None = None
        if store is not None:
            try:
                shown = await _shown(store, await store.get(approval_id), datetime.now(UTC), visitor)
            except ApprovalFailure:
                shown = None
        if shown is None:
            return render(request, "missing.html", {"what": "question"}, visitor=visitor, status_code=404)
        context = {"approval": shown, "error": error}
        return render(request, "approval.html", context, visitor=visitor, section="approvals", status_code=409)

    async def history(request: Request, visitor: Visitor) -> Response:
        store = store_or_none()
        params = request.query_params
        state_name = params.get("state") or None
        rows: list[dict[str, Any]] = []
        next_cursor: str | None = None
        error: str | None = None
        if store is not None:
            try:
                state = ApprovalState(state_name) if state_name else None
                page = await store.list(
                    state=state,
                    limit=PAGE_SIZE,
                    cursor=params.get("cursor") or None,
                    agent=params.get("agent") or None,
                    tool=params.get("tool") or None,
                )
            except (ValueError, InvalidApprovalQuery) as exc:
                error = f"Cannot list those approvals: {exc}"
            else:
                now = datetime.now(UTC)
                rows = [approval_json(approval, await store.votes(approval.id), now) for approval in page.approvals]
                next_cursor = page.next_cursor
        context = {
            "rows": rows,
            "next_cursor": next_cursor,
            "states": [state.value for state in ApprovalState],
            "filters": {"state": state_name or "", "agent": params.get("agent", ""), "tool": params.get("tool", "")},
            "error": error,
        }
        return render(request, "approvals_history.html", context, visitor=visitor, section="approvals")

    return [
        Route("/approvals", guard.page(Permission.VIEWER, inbox), methods=["GET"]),
        Route("/approvals/history", guard.page(Permission.VIEWER, history), methods=["GET"]),
        Route("/approvals/{approval_id}", guard.page(Permission.VIEWER, one), methods=["GET"]),
        Route("/approvals/{approval_id}/decide", guard.page(Permission.APPROVER, decide), methods=["POST"]),
        Route("/approvals/{approval_id}/answer", guard.page(Permission.APPROVER, answer), methods=["POST"]),
    ]


async def _shown(store: ApprovalStore, approval: Approval, now: datetime, visitor: Visitor) -> dict[str, Any]:
    """The approval as the API shows it, plus what this visitor may do with it."""
    shown = approval_json(approval, await store.votes(approval.id), now)
    shown["may_decide"] = (
        visitor.may(Permission.APPROVER)
        and approval.state is ApprovalState.PENDING
        and approval.approver_for(visitor.user.name, visitor.user.roles)
        and visitor.user.name not in (approval.agent, approval.user)
        and all(vote["user"] != visitor.user.name for vote in shown["votes"])
    )
    return shown
