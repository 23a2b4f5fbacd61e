"""Agents: every agent the gateway knows, what each did lately, and the API keys they call with.

An agent is known by its API keys and by the audit log, which also names the agents that
authenticate with the identity provider's tokens and so have no key here. Reading is for every
console person; issuing and revoking keys is for admins, checked on the server for each request.
A new key's secret is on the page that issued it and nowhere else: it is never stored, logged
or put in the audit event, so an admin who does not copy it revokes the key and issues another.
Revoking asks first, on a page of its own, so it works without JavaScript.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.console import agent_figures as figures
from gateway.console.access import Permission, Visitor
from gateway.console.admin import field, record, roles_of
from gateway.console.guard import Guard
from gateway.console.rendering import render
from gateway.console.services import ConsoleServices
from gateway.console.stats import sparkline
from gateway.errors import AdministrationError, UnknownApiKey
from gateway.identity.api_keys import ApiKeyRecord


@dataclass(frozen=True, slots=True)
class AgentRow:
    """One agent as the list shows it."""

    name: str
    keys: tuple[ApiKeyRecord, ...]
    last: figures.AgentCall | None
    hour: figures.HourCounts

    @property
    def key_roles(self) -> tuple[str, ...]:
        """The roles its keys that still work give it; an agent with no such key has only its token's."""
        return tuple(dict.fromkeys(role for key in self.keys if not key.revoked for role in key.roles))

    @property
    def last_seen(self) -> datetime | None:
        return self.last.time if self.last is not None else None


def routes(services: ConsoleServices, guard: Guard) -> list[BaseRoute]:
    async def agents(request: Request, visitor: Visitor) -> Response:
        keys = await services.keys.list()
        by_agent: dict[str, list[ApiKeyRecord]] = defaultdict(list)
        for key in keys:
            by_agent[key.agent].append(key)
        logged, more_logged = await figures.agents_in_log(services.database)
        hour = await figures.last_hour_by_agent(services.database)
        suspended = {suspension.agent: suspension for suspension in await services.suspensions.active()}
        rows = [
            AgentRow(
                name,
                tuple(by_agent.get(name, ())),
                await figures.last_call(services.database, name),
                hour.counts.get(name, figures.HourCounts()),
            )
            for name in sorted({*by_agent, *logged, *hour.counts, *suspended})
        ]
        # Busiest lately first; agents never seen calling last, by name.
        rows.sort(key=lambda row: (row.last_seen is None, -(row.last_seen.timestamp() if row.last_seen else 0)))
        context = {
            "rows": rows,
            "hour_partial": hour.partial,
            "more_logged": more_logged,
            "max_agents": figures.MAX_AGENTS,
            "sessions": services.runtime.notifier.session_count,
            "suspended": suspended,
        }
        return render(request, "agents.html", context, visitor=visitor, section="agents")

    async def agent(request: Request, visitor: Visitor) -> Response:
        name = request.path_params["agent"]
        keys = [key for key in await services.keys.list() if key.agent == name]
        history = await services.suspensions.history(agent=name, limit=10)
        if not keys and not history and not await figures.named_in_log(services.database, name):
            return render(request, "missing.html", {"what": "agent"}, visitor=visitor, status_code=404)
        calls = await figures.recent_calls(services.database, name)
        day = await figures.last_day(services.database, name)
        context = {
            "name": name,
            "keys": keys,
            "calls": calls,
            "last": calls[0] if calls else None,
            "day": day,
            "hours": list(zip(range(-figures.HOURS + 1, 1), day.calls_per_hour, day.denials_per_hour, strict=True)),
            "calls_line": sparkline(day.calls_per_hour),
            "denials_line": sparkline(day.denials_per_hour),
            # Said only when the list bears it out, so a crafted link cannot make the page claim it.
            "revoked": next((k for k in keys if k.revoked and k.id == request.query_params.get("revoked")), None),
            "suspension": next((s for s in history if s.active), None),
            "history": [s for s in history if not s.active],
            "just_suspended": request.query_params.get("suspended") == "1",
            "resumed": request.query_params.get("resumed") == "1" and not any(s.active for s in history),
        }
        return render(request, "agent.html", context, visitor=visitor, section="agents")

    async def new_key(request: Request, visitor: Visitor) -> Response:
        draft = {"agent": request.query_params.get("agent", ""), "roles": "", "description": ""}
        return render(request, "key_new.html", {"draft": draft}, visitor=visitor, section="agents")

    async def create_key(request: Request, visitor: Visitor) -> Response:
        form = await request.form()
        draft = {name: field(form, name) for name in ("agent", "roles", "description")}
        try:
            issued, secret = await services.keys.create(
                draft["agent"], roles_of(draft["roles"]), draft["description"] or None
            )
        except AdministrationError as exc:
            context = {"draft": draft, "error": str(exc)}
            return render(request, "key_new.html", context, visitor=visitor, section="agents", status_code=400)
        await record(
            services,
            request,
            visitor,
            "key_created",
            target=issued.id,
            details={
                "agent": issued.agent,
                "roles": list(issued.roles),
                "prefix": issued.prefix,
                "description": issued.description,
            },
        )
        shown: dict[str, Any] = {
            "title": f"API key for {issued.agent}",
            "facts": [
                ("Agent", issued.agent),
                ("Key id", issued.id),
                ("Roles", ", ".join(issued.roles) or "none"),
                ("Description", issued.description or "-"),
            ],
            "secret": secret,
            "usage": "The agent sends it to the gateway's MCP endpoint in the header Authorization: Bearer <key>.",
            "back": (f"/ui/agents/{quote(issued.agent, safe='')}", f"Back to {issued.agent}"),
        }
        return render(request, "secret.html", shown, visitor=visitor, section="agents")

    async def find_key(key_id: str) -> ApiKeyRecord | None:
        return next((key for key in await services.keys.list() if key.id == key_id), None)

    async def confirm_revoke(request: Request, visitor: Visitor) -> Response:
        key = await find_key(request.path_params["key_id"])
        if key is None:
            return render(request, "missing.html", {"what": "API key"}, visitor=visitor, status_code=404)
        context = {"key": key, "poll": services.runtime.config.gateway.auth.revocation_poll_seconds}
        return render(request, "key_revoke.html", context, visitor=visitor, section="agents")

    async def revoke(request: Request, visitor: Visitor) -> Response:
        key_id = request.path_params["key_id"]
        before = await find_key(key_id)
        if before is None:
            return render(request, "missing.html", {"what": "API key"}, visitor=visitor, status_code=404)
        try:
            revoked = await services.keys.revoke(key_id)
        except UnknownApiKey:
            return render(request, "missing.html", {"what": "API key"}, visitor=visitor, status_code=404)
        if not before.revoked:
            await record(services, request, visitor, "key_revoked", target=revoked.id, details={"agent": revoked.agent})
        return RedirectResponse(
            f"/ui/agents/{quote(revoked.agent, safe='')}?revoked={quote(revoked.id, safe='')}", status_code=303
        )

    return [
        Route("/agents", guard.page(Permission.VIEWER, agents), methods=["GET"]),
        Route("/agents/{agent:path}", guard.page(Permission.VIEWER, agent), methods=["GET"]),
        Route("/keys/new", guard.page(Permission.ADMIN, new_key), methods=["GET"]),
        Route("/keys", guard.page(Permission.ADMIN, create_key), methods=["POST"]),
        Route("/keys/{key_id}/revoke", guard.page(Permission.ADMIN, confirm_revoke), methods=["GET"]),
        Route("/keys/{key_id}/revoke", guard.page(Permission.ADMIN, revoke), methods=["POST"]),
    ]
