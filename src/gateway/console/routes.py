"""The console at `/ui`: its routes in one list, behind the security headers. No logic lives here."""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import BaseRoute, Mount, Router
from starlette.staticfiles import StaticFiles

from gateway.console.fallbacks import not_found, refused
from gateway.console.guard import Guard
from gateway.console.pages import (
    activity,
    agents,
    approvals,
    audit,
    connectors,
    events,
    overview,
    policies,
    suspensions,
    users,
    workflows,
)
from gateway.console.security import SecurityHeaders
from gateway.console.services import ConsoleServices
from gateway.console.signin import SignIn

STATIC = Path(__file__).parent / "static"


def console_routes(services: ConsoleServices) -> list[BaseRoute]:
    """`/ui` and everything under it; empty when `[console] enabled = false`."""
    if not services.settings.enabled:
        return []
    guard = Guard(services)
    routes: list[BaseRoute] = [
        Mount("/static", app=StaticFiles(directory=STATIC), name="console-static"),
        *SignIn(services, guard).routes(),
        *overview.routes(services, guard),
        *approvals.routes(services, guard),
        *events.routes(services, guard),
        *suspensions.routes(services, guard),
        *agents.routes(services, guard),
        *users.routes(services, guard),
        *connectors.routes(services, guard),
        *policies.routes(services, guard),
        *activity.routes(services, guard),
        *workflows.routes(services, guard),
        *audit.routes(services, guard),
    ]

    router = Router(routes=routes, default=not_found(guard))
    pages = ExceptionMiddleware(router, handlers={HTTPException: refused(guard)})
    return [Mount("/ui", app=SecurityHeaders(pages))]
