"""People: the console's users, their roles and user keys; admins create them, issue and revoke keys, disable them.

Listed for every console person, changed by admins only (checked on the server). A user key's
secret is shown once, on the page that issued it, as for agents' keys. Revoking a key or
disabling a person ends their console sessions at once on every replica: sessions do not record
which key opened them, so any of them may be the revoked key's. An admin cannot disable
themselves, so the console cannot be left without the admin who was using it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.console.access import Permission, Visitor
from gateway.console.admin import field, record, roles_of
from gateway.console.guard import Guard
from gateway.console.rendering import render
from gateway.console.services import ConsoleServices
from gateway.errors import AdministrationError, UnknownUser, UnknownUserKey
from gateway.identity.users import UserKey, UserRecord


def routes(services: ConsoleServices, guard: Guard) -> list[BaseRoute]:
    async def listing(
        request: Request,
        visitor: Visitor,
        *,
        draft: dict[str, str] | None = None,
        error: str | None = None,
        status_code: int = 200,
    ) -> Response:
        people = await services.users.list()
        context = {
            "users": people,
            "draft": draft or {"name": "", "roles": ""},
            "error": error,
            "notice": _notice(request, people),
        }
        return render(request, "users.html", context, visitor=visitor, section="agents", status_code=status_code)

    async def users(request: Request, visitor: Visitor) -> Response:
        return await listing(request, visitor)

    async def create(request: Request, visitor: Visitor) -> Response:
        form = await request.form()
        draft = {"name": field(form, "name"), "roles": field(form, "roles")}
        try:
            user, secret = await services.users.create(draft["name"], roles_of(draft["roles"]))
            created = await services.users.get(user.name)
        except AdministrationError as exc:
            return await listing(request, visitor, draft=draft, error=str(exc), status_code=400)
        key_id = created.keys[0].id if created.keys else None
        details = {"roles": list(user.roles), "key": key_id}
        await record(services, request, visitor, "user_created", target=user.name, details=details)
        return _secret_page(request, visitor, created.user.name, key_id, secret)

    async def add_key(request: Request, visitor: Visitor) -> Response:
        name = request.path_params["name"]
        try:
            key, secret = await services.users.add_key(name)
        except UnknownUser:
            return render(request, "missing.html", {"what": "user"}, visitor=visitor, status_code=404)
        except AdministrationError as exc:
            return await listing(request, visitor, error=str(exc), status_code=409)
        await record(services, request, visitor, "user_key_created", target=key.id, details={"user": name})
        return _secret_page(request, visitor, name, key.id, secret)

    async def find_key(key_id: str) -> tuple[UserRecord, UserKey] | None:
        for user in await services.users.list():
            for key in user.keys:
                if key.id == key_id:
                    return user, key
        return None

    async def confirm_revoke(request: Request, visitor: Visitor) -> Response:
        found = await find_key(request.path_params["key_id"])
        if found is None:
            return render(request, "missing.html", {"what": "user key"}, visitor=visitor, status_code=404)
        user, key = found
        context = {"user": user, "key": key, "own": user.user.name == visitor.user.name}
        return render(request, "user_key_revoke.html", context, visitor=visitor, section="agents")

    async def revoke(request: Request, visitor: Visitor) -> Response:
        key_id = request.path_params["key_id"]
        found = await find_key(key_id)
        if found is None:
            return render(request, "missing.html", {"what": "user key"}, visitor=visitor, status_code=404)
        try:
            key = await services.users.revoke_key(key_id)
        except UnknownUserKey:
            return render(request, "missing.html", {"what": "user key"}, visitor=visitor, status_code=404)
        if not found[1].revoked:
            ended = await services.sessions.close_all_of(key.user)
            details = {"user": key.user, "sessions_ended": ended}
            await record(services, request, visitor, "user_key_revoked", target=key.id, details=details)
        return RedirectResponse(f"/ui/users?revoked={quote(key.id, safe='')}", status_code=303)

    async def confirm_disable(request: Request, visitor: Visitor) -> Response:
        try:
            user = await services.users.get(request.path_params["name"])
        except UnknownUser:
            return render(request, "missing.html", {"what": "user"}, visitor=visitor, status_code=404)
        context = {"user": user, "own": user.user.name == visitor.user.name}
        return render(request, "user_disable.html", context, visitor=visitor, section="agents")

    async def disable(request: Request, visitor: Visitor) -> Response:
        name = request.path_params["name"]
        if name == visitor.user.name:
            error = "You cannot disable yourself: ask another admin, so the console keeps someone to run it."
            return await listing(request, visitor, error=error, status_code=409)
        try:
            before = await services.users.get(name)
            await services.users.disable(name)
        except UnknownUser:
            return render(request, "missing.html", {"what": "user"}, visitor=visitor, status_code=404)
        ended = await services.sessions.close_all_of(name)
        if not before.disabled:
            await record(services, request, visitor, "user_disabled", target=name, details={"sessions_ended": ended})
        return RedirectResponse(f"/ui/users?disabled={quote(name, safe='')}", status_code=303)

    return [
        Route("/users", guard.page(Permission.VIEWER, users), methods=["GET"]),
        Route("/users", guard.page(Permission.ADMIN, create), methods=["POST"]),
        Route("/users/keys/{key_id}/revoke", guard.page(Permission.ADMIN, confirm_revoke), methods=["GET"]),
        Route("/users/keys/{key_id}/revoke", guard.page(Permission.ADMIN, revoke), methods=["POST"]),
        Route("/users/{name}/keys", guard.page(Permission.ADMIN, add_key), methods=["POST"]),
        Route("/users/{name}/disable", guard.page(Permission.ADMIN, confirm_disable), methods=["GET"]),
        Route("/users/{name}/disable", guard.page(Permission.ADMIN, disable), methods=["POST"]),
    ]


def _notice(request: Request, people: list[UserRecord]) -> str | None:
    """What the last change did, said only when the list bears it out (a link cannot make the page claim it)."""
    revoked, disabled = request.query_params.get("revoked"), request.query_params.get("disabled")
    for user in people:
        if disabled == user.user.name and user.disabled:
            return f"{user.user.name} is disabled, and their console sessions have ended."
        for key in user.keys:
            if revoked == key.id and key.revoked:
                return f"Key {key.id} of {user.user.name} is revoked, and their console sessions have ended."
    return None


def _secret_page(request: Request, visitor: Visitor, name: str, key_id: str | None, secret: str) -> Response:
    context: dict[str, Any] = {
        "title": f"User key for {name}",
        "facts": [("User", name), ("Key id", key_id or "-")],
        "secret": secret,
        "usage": "They sign in to the console with it, and the approvals API takes it as Authorization: Bearer <key>.",
        "back": ("/ui/users", "Back to people"),
    }
    return render(request, "secret.html", context, visitor=visitor, section="agents")
