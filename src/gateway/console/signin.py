"""Signing in and out of the console: a user key typed into a form, or the identity provider.

A person proves who they are once, here; the console then knows them by a session cookie (see
`sessions.py`). Only people whose roles carry a console permission get a session: a person with
a user key but no `viewer`, `approver` or `admin` role is told which roles they lack. Signing in
and out are audit events with the person and the address they came from.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.console.access import permissions_of
from gateway.console.guard import Guard
from gateway.console.rendering import render
from gateway.console.security import (
    COOKIE_PATH,
    CSRF_FIELD,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    clear_session_cookie,
    same_origin,
    secure_cookies,
    set_session_cookie,
    tokens_match,
)
from gateway.console.services import ConsoleServices
from gateway.errors import AuthenticationFailed
from gateway.identity.users import User


def local_path(target: str | None) -> str:
    """Where to go after signing in: a console path of this gateway, never another site."""
    if not target or not target.startswith("/ui") or target.startswith("//") or "\\" in target:
        return "/ui/"
    return target


class SignIn:
    def __init__(self, services: ConsoleServices, guard: Guard) -> None:
        self._services = services
        self._guard = guard

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/login", self.form, methods=["GET"]),
            Route("/login", self.with_key, methods=["POST"]),
            Route("/logout", self.sign_out, methods=["POST"]),
            Route("/auth/oidc", self.with_provider, methods=["GET"]),
            Route("/auth/callback", self.provider_callback, methods=["GET"]),
        ]

    async def form(self, request: Request, *, error: str | None = None, status_code: int = 200) -> Response:
        if error is None and await self._guard.visitor(request) is not None:
            return RedirectResponse(local_path(request.query_params.get("next")), status_code=303)
        token = secrets.token_urlsafe(32)
        context = {
            "error": error,
            "next": local_path(request.query_params.get("next")),
            "login_csrf": token,
            "oidc_label": self._services.signin.label if self._services.signin is not None else None,
        }
        response = render(request, "login.html", context, status_code=status_code)
        response.set_cookie(
            LOGIN_COOKIE,
            token,
            max_age=3600,
            path=COOKIE_PATH,
            httponly=True,
            secure=secure_cookies(request),
            samesite="strict",
        )
        return response

    async def with_key(self, request: Request) -> Response:
        form = await request.form()
        presented = form.get(CSRF_FIELD)
        if not same_origin(request) or not tokens_match(
            presented if isinstance(presented, str) else None, request.cookies.get(LOGIN_COOKIE, "")
        ):
            return await self.form(
                request, error="The sign-in form expired or came from another site: try again.", status_code=403
            )
        key = form.get("key")
        key = key.strip() if isinstance(key, str) else ""
        if not key:
            return await self.form(request, error="Enter your user key (it starts with agu_).", status_code=400)
        try:
            user = await self._services.users.authenticate(key)
        except AuthenticationFailed as exc:
            await self._refused(request, str(exc))
            return await self.form(request, error=f"Not signed in: {exc}.", status_code=401)
        target = form.get("next")
        return await self.start_session(request, user, via="key", target=target if isinstance(target, str) else None)

    async def with_provider(self, request: Request) -> Response:
        """Off to the identity provider; it sends the browser back to `provider_callback`."""
        signin = self._services.signin
        if signin is None:
            return await self.form(request, error="This gateway signs no one in through an identity provider.")
        try:
            return await signin.begin(request, local_path(request.query_params.get("next")))
        except AuthenticationFailed as exc:
            return await self.form(request, error=f"Not signed in: {exc}.", status_code=502)

    async def provider_callback(self, request: Request) -> Response:
        signin = self._services.signin
        if signin is None:
            return await self.form(request, error="This gateway signs no one in through an identity provider.")
        try:
            user, target = await signin.finish(request)
        except AuthenticationFailed as exc:
            await self._refused(request, str(exc))
            response = await self.form(request, error=f"Not signed in: {exc}.", status_code=401)
        else:
            response = await self.start_session(request, user, via="oidc", target=target)
        signin.forget(response)
        return response

    async def start_session(self, request: Request, user: User, *, via: str, target: str | None) -> Response:
        """Open a session for a person proven by `via`, if their roles let them into the console at all."""
        if not permissions_of(user.roles, self._services.settings):
            held = ", ".join(user.roles) or "none"
            needed = ", ".join(self._services.settings.viewer_roles)
            message = f"{user.name} may not use the console: their roles ({held}) include none of {needed}."
            await self._refused(request, message, user=user.name)
            return await self.form(request, error=message, status_code=403)
        secret, session = await self._services.sessions.open(user, via=via)
        await self._services.audit.record_console_event(
            "sign_in", user=user.name, via=via, client_address=_client(request)
        )
        if via == "key":
            response: Response = RedirectResponse(local_path(target), status_code=303)
        else:
            # Back from the identity provider's site: a redirect would still count as that site's
            # navigation, and the browser would hold back the SameSite=Strict cookie just set. A
            # page of our own that moves on (no script: a meta refresh) makes the next request ours.
            response = render(request, "signed_in.html", {"target": local_path(target)})
        max_age = int((session.expires_at - session.created_at).total_seconds())
        set_session_cookie(response, request, secret, max_age)
        response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
        return response

    async def sign_out(self, request: Request) -> Response:
        visitor = await self._guard.visitor(request)
        response = RedirectResponse("/ui/login", status_code=303)
        if visitor is None:
            clear_session_cookie(response, request)
            return response
        form = await request.form()
        presented = form.get(CSRF_FIELD)
        if not same_origin(request) or not tokens_match(
            presented if isinstance(presented, str) else None, visitor.session.csrf_token
        ):
            return RedirectResponse(f"/ui/?signout={quote('refused')}", status_code=303)
        await self._services.sessions.close(request.cookies.get(SESSION_COOKIE, ""))
        await self._services.audit.record_console_event(
            "sign_out", user=visitor.user.name, via=visitor.session.via, client_address=_client(request)
        )
        clear_session_cookie(response, request)
        return response

    async def _refused(self, request: Request, reason: str, *, user: str | None = None) -> None:
        await self._services.audit.record_auth_refused(
            reason if user is None else f"{user}: {reason}",
            _client(request),
            method=request.method,
            path=request.url.path,
            auth_method="console",
        )


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None
