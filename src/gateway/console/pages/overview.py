"""Overview: what the gateway is doing right now, at a glance (calls, denials, waiting approvals, backends)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.approvals import ApprovalState
from gateway.console.access import Permission, Visitor
from gateway.console.guard import Guard
from gateway.console.pages.events import live_seen
from gateway.console.rendering import render
from gateway.console.services import ConsoleServices
from gateway.console.stats import last_hour, sparkline


def routes(services: ConsoleServices, guard: Guard) -> list[BaseRoute]:
    async def overview(request: Request, visitor: Visitor) -> Response:
        hour = await last_hour(services.database)
        pending = 0
        if services.approvals is not None:
            pending = await services.approvals.count(state=ApprovalState.PENDING)
        backends = {name: connector.health for name, connector in services.runtime.backends.items()}
        context = {
            "hour": hour,
            "calls_line": sparkline(hour.calls_per_minute),
            "denials_line": sparkline(hour.denials_per_minute),
            "pending": pending,
            "backends": backends,
            "policies": services.policy.store.status,
            "live_seen": await live_seen(services),
        }
        template = "overview_body.html" if request.headers.get("x-requested-with") == "console" else "overview.html"
        return render(request, template, context, visitor=visitor, section="overview")

    return [Route("/", guard.page(Permission.VIEWER, overview), methods=["GET"])]
