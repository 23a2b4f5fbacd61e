"""Suspending and resuming agents from the console: the kill switch, for admins only.

The agent's page carries the switch (a reason and a button), and `/ui/suspensions/new` suspends
any name, an agent that has not connected yet included. Both post to `/ui/suspensions`, checked
on the server for the admin permission and the session's CSRF token like every write. The
suspension goes through the running gateway's store: this process refuses the agent at once,
the others on the signal or their next poll, and the agent's pending approvals are cancelled
with the reason. Each change is audited twice: as a suspension (what happened to the agent) and
as a console event (who did it, how they signed in, from where).
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.console.access import Permission, Visitor
from gateway.console.admin import field, record
from gateway.console.guard import Guard
from gateway.console.rendering import render
from gateway.console.services import ConsoleServices
from gateway.errors import AdministrationError, AgentAlreadySuspended, AgentNotSuspended

#: How the audit event says a change was made.
VIA = "console"


def routes(services: ConsoleServices, guard: Guard) -> list[BaseRoute]:
    async def new(request: Request, visitor: Visitor) -> Response:
        draft = {"agent": request.query_params.get("agent", ""), "reason": ""}
        return render(request, "agent_suspend.html", {"draft": draft}, visitor=visitor, section="agents")

    async def suspend(request: Request, visitor: Visitor) -> Response:
        form = await request.form()
        draft = {"agent": field(form, "agent"), "reason": field(form, "reason")}
        try:
            done = await services.suspensions.suspend(
                draft["agent"], actor=visitor.user.name, reason=draft["reason"], details={"via": VIA}
            )
        except AdministrationError as exc:
            status = 409 if isinstance(exc, AgentAlreadySuspended) else 400
            context = {"draft": draft, "error": str(exc)}
            return render(request, "agent_suspend.html", context, visitor=visitor, section="agents", status_code=status)
        suspension = done.suspension
        await record(
            services,
            request,
            visitor,
            "agent_suspended",
            target=suspension.agent,
            details={"reason": suspension.reason, "cancelled_approvals": list(done.cancelled_approvals)},
        )
        return RedirectResponse(f"/ui/agents/{quote(suspension.agent, safe='')}?suspended=1", status_code=303)

    async def resume(request: Request, visitor: Visitor) -> Response:
        form = await request.form()
        agent = field(form, "agent")
        try:
            ended = await services.suspensions.resume(
                agent, actor=visitor.user.name, comment=field(form, "comment") or None, details={"via": VIA}
            )
        except AgentNotSuspended as exc:
            return render(request, "forbidden.html", {"message": str(exc)}, visitor=visitor, status_code=409)
        await record(services, request, visitor, "agent_resumed", target=ended.agent, details={"suspension": ended.id})
        return RedirectResponse(f"/ui/agents/{quote(ended.agent, safe='')}?resumed=1", status_code=303)

    return [
        Route("/suspensions/new", guard.page(Permission.ADMIN, new), methods=["GET"]),
        Route("/suspensions", guard.page(Permission.ADMIN, suspend), methods=["POST"]),
        Route("/suspensions/resume", guard.page(Permission.ADMIN, resume), methods=["POST"]),
    ]
