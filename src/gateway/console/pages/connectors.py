"""Connectors: each backend's health, and the tools, resources and prompts agents get from it.

Tools are shown as the catalog holds them, which is what agents are offered and policies are
checked against: the backend's last listing, live, or the stored one while it has not answered
since the gateway started. Each tool's annotations are the backend's own hints (MCP says how to
read one left unset), and its labels come from the connector file. The gateway's own tools
(`gateway`) are a connector too, built in rather than configured.

When a listing arrived is not kept by the live connection; the database keeps the time each
backend's listing was last stored, which is when it last changed, and the page says that.

Tools waiting for review (quarantined because their definition changed since it was accepted,
or new and held) come first, each with the diff of its definition and the instruction flags
found in it; an admin accepts one with a reason (CSRF-checked like every write, audited as a
tool pin event and as a console event). Viewers see the same diffs without the button.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.catalog import Catalog
from gateway.catalog.definitions import definition_diff
from gateway.catalog.pins import Review
from gateway.connectors.base import Health
from gateway.console.access import Permission, Visitor
from gateway.console.admin import field, record
from gateway.console.guard import Guard
from gateway.console.rendering import render
from gateway.console.services import ConsoleServices
from gateway.errors import NothingToAccept
from gateway.settings.connectors import GATEWAY_TOOLS_CONNECTOR
from gateway.storage.database import Database
from gateway.storage.tables import CatalogListingRow

#: The MCP tool hints, as the page names them, with what an unset one means (the spec's defaults).
HINTS = (
    ("readOnlyHint", "read-only", False),
    ("destructiveHint", "destructive", True),
    ("idempotentHint", "idempotent", False),
    ("openWorldHint", "open-world", True),
)


@dataclass(frozen=True, slots=True)
class Hint:
    label: str
    #: True or False as the backend declared it; None when it left the hint unset.
    declared: bool | None
    default: bool


@dataclass(frozen=True, slots=True)
class ToolRow:
    exposed: str
    #: The backend's own name for it, when the exposed name is not simply the prefixed one.
    renamed_from: str | None
    description: str
    hints: tuple[Hint, ...]
    labels: tuple[str, ...]
    #: False while a problem with the connector's file withholds its tools from agents.
    served: bool


@dataclass(frozen=True, slots=True)
class ConnectorView:
    name: str
    built_in: bool
    kind: str
    description: str | None
    health: Health
    problems: tuple[str, ...]
    listed: bool
    tools: tuple[ToolRow, ...]
    resources: int
    templates: int
    prompts: int
    stored_at: datetime | None


@dataclass(frozen=True, slots=True)
class PendingTool:
    """A tool withheld until an admin accepts its definition, as the review section shows it."""

    exposed: str
    connector: str
    state: str
    seen_at: datetime
    accepted_by: str | None
    accepted_at: datetime | None
    diff: tuple[str, ...]
    flags: tuple[str, ...]


def _pending(services: ConsoleServices) -> list[PendingTool]:
    keeper = services.runtime.pins
    state = keeper.book.state
    rows = []
    for key, review in state.reviews.items():
        pin = state.pins.get(key)
        exposed = keeper.exposed(key)
        rows.append(
            PendingTool(
                exposed=exposed,
                connector=key[0],
                state=_state_label(review),
                seen_at=review.seen_at,
                accepted_by=pin.accepted_by if pin is not None else None,
                accepted_at=pin.accepted_at if pin is not None else None,
                diff=tuple(definition_diff(pin.definition if pin else None, review.definition, name=exposed)),
                flags=tuple(flag.sentence() for flag in review.flags),
            )
        )
    return sorted(rows, key=lambda row: row.exposed)


def _state_label(review: Review) -> str:
    return "quarantined" if review.state == "changed" else "held"


def routes(services: ConsoleServices, guard: Guard) -> list[BaseRoute]:
    async def accept(request: Request, visitor: Visitor) -> Response:
        form = await request.form()
        name, reason = field(form, "tool"), field(form, "reason")
        try:
            review = await services.runtime.accept_tool(name, actor=visitor.user.name, reason=reason)
        except NothingToAccept as exc:
            return render(request, "forbidden.html", {"message": str(exc)}, visitor=visitor, status_code=409)
        await record(
            services,
            request,
            visitor,
            "tool_accepted",
            target=name,
            details={"digest": review.digest, "reason": reason},
        )
        return RedirectResponse(f"/ui/connectors?accepted={name}", status_code=303)

    async def connectors(request: Request, visitor: Visitor) -> Response:
        stored = await _stored_times(services.database)
        catalog = services.catalog
        settings = {connector.name: connector for connector in services.runtime.config.connectors}
        views = [
            _view(
                catalog,
                name,
                connector.health,
                stored.get(name),
                kind=settings[name].kind if name in settings else "gateway",
                description=settings[name].description if name in settings else None,
            )
            for name, connector in services.runtime.connectors.items()
        ]
        views.sort(key=lambda view: (view.built_in, view.name))
        await services.runtime.pins.load()  # the CLI or another replica may have changed them
        context = {"connectors": views, "pending": _pending(services), "accepted": request.query_params.get("accepted")}
        return render(request, "connectors.html", context, visitor=visitor, section="connectors")

    return [
        Route("/connectors", guard.page(Permission.VIEWER, connectors), methods=["GET"]),
        Route("/connectors/accept", guard.page(Permission.ADMIN, accept), methods=["POST"]),
    ]


async def _stored_times(database: Database) -> dict[str, datetime]:
    """When each backend's listing was last stored; the listings themselves are not read."""
    async with database.session() as session:
        rows = (await session.execute(select(CatalogListingRow.connector, CatalogListingRow.updated_at))).all()
    return {row.connector: row.updated_at for row in rows}


def _view(
    catalog: Catalog, name: str, health: Health, stored_at: datetime | None, *, kind: str, description: str | None
) -> ConnectorView:
    served = {tool.exposed for tool in catalog.tools() if tool.connector == name}
    tools = tuple(
        ToolRow(
            exposed=tool.exposed,
            renamed_from=tool.original if tool.exposed != f"{name}{catalog.separator}{tool.original}" else None,
            description=str(tool.definition.get("description") or ""),
            hints=_hints(tool.annotations),
            labels=tool.labels,
            served=tool.exposed in served,
        )
        for tool in catalog.policy_tools()
        if tool.connector == name
    )
    return ConnectorView(
        name=name,
        built_in=name == GATEWAY_TOOLS_CONNECTOR,
        kind=kind,
        description=description,
        health=health,
        problems=tuple(dict.fromkeys((*health.problems, *catalog.problems().get(name, ())))),
        listed=name not in catalog.unlisted_connectors(),
        tools=tuple(sorted(tools, key=lambda row: row.exposed)),
        resources=sum(1 for entry in catalog.resources() if entry.connector == name),
        templates=sum(1 for entry in catalog.resource_templates() if entry.connector == name),
        prompts=sum(1 for entry in catalog.prompts() if entry.connector == name),
        stored_at=stored_at,
    )


def _hints(annotations: Mapping[str, Any]) -> tuple[Hint, ...]:
    return tuple(
        Hint(label, annotations[key] if isinstance(annotations.get(key), bool) else None, default)
        for key, label, default in HINTS
    )
