"""The Starlette app: every door of the gateway, listed in one place. No logic lives here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.routing import Route

from gateway.config import Config
from gateway.console import ConsoleServices, ConsoleSessions, console_routes
from gateway.console.oidc import ConsoleSignIn
from gateway.front.approvals_api import ApprovalFeed, approvals_routes
from gateway.front.audit_api import audit_routes
from gateway.front.bearer import authenticate_request
from gateway.front.health import healthz, readyz_endpoint
from gateway.front.http import build_endpoint, build_mcp_endpoint, build_session_manager
from gateway.front.mcp_first import McpFirstApp
from gateway.front.ops_access import OpsAccess
from gateway.front.resource_metadata import metadata_routes
from gateway.front.server import build_server
from gateway.identity.people import PeopleAuthenticator
from gateway.identity.users import UserStore
from gateway.runtime import GatewayRuntime
from gateway.storage.ended_sessions import EndedSessionsTable


def create_app(config: Config, *, migrations_done: bool = False, predecessor_pid: int | None = None) -> Starlette:
    """The gateway for `config`, serving alone or as one of a supervisor's workers.

    A worker's supervisor migrated the schema already (`migrations_done`); a restarted worker takes
    the audit lease of the dead one it replaces (`predecessor_pid`) without waiting for it to expire.
    """
    runtime = GatewayRuntime(config)
    ops = OpsAccess(config.gateway.server.ops_token)
    server = build_server(runtime.pipeline, runtime.notifier)
    sessions = build_session_manager(server, config.gateway.server)
    endpoint = build_endpoint(
        server,
        runtime.pipeline,
        runtime.notifier,
        sessions,
        config.gateway.server,
        EndedSessionsTable(runtime.database),
    )

    # This process's approval changes reach the console's event stream at once; other processes' by polling.
    approval_feed = ApprovalFeed(runtime.approvals) if runtime.approvals is not None else None
    # Approvers: user keys, and sign-in tokens from [auth.people]; never agents' credentials.
    people = PeopleAuthenticator(UserStore(runtime.database), config.gateway.auth)
    console_settings = config.gateway.console
    signin = (
        ConsoleSignIn(
            console_settings.oidc,
            config.gateway.auth.people,
            people,
            cookie_secrets=[key.get_secret_value() for key in config.gateway.server.session_keys],
        )
        if console_settings.oidc is not None and config.gateway.auth.people is not None
        else None
    )
    console = ConsoleServices(
        runtime=runtime,
        settings=config.gateway.console,
        sessions=ConsoleSessions(runtime.database, config.gateway.console),
        people=people,
        users=UserStore(runtime.database),
        feed=approval_feed,
        signin=signin,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        running = runtime.running(migrate=not migrations_done, predecessor_pid=predecessor_pid)
        try:
            async with running, sessions.run(), anyio.create_task_group() as tasks:
                await tasks.start(endpoint.follow, runtime.signals)
                try:
                    yield
                finally:
                    runtime.notifier.close()  # standing streams end, so the server can stop
                    if approval_feed is not None:
                        approval_feed.close()
                    tasks.cancel_scope.cancel()
        finally:
            await people.aclose()
            if signin is not None:
                await signin.aclose()

    mcp_path = config.gateway.server.path
    mcp_app = build_mcp_endpoint(
        endpoint, runtime.authenticator, config.gateway.auth, on_refused=runtime.record_auth_refused
    )
    return McpFirstApp(
        mcp_path=mcp_path,
        mcp_app=mcp_app,
        routes=[
            Route(mcp_path, endpoint=mcp_app),  # served first by `McpFirstApp`; kept for a `root_path`
            Route("/healthz", endpoint=healthz),
            Route("/readyz", endpoint=readyz_endpoint(runtime.readiness(), ops)),
            Route("/metrics", endpoint=ops.protect(runtime.telemetry.metrics_endpoint, "/metrics")),
            *metadata_routes(config.gateway.auth),
            *audit_routes(
                runtime.database,
                lambda request: authenticate_request(request, runtime.authenticator),
                frozenset(config.gateway.audit.admin_roles),
            ),
            *approvals_routes(runtime.approvals, people, feed=approval_feed),
            *console_routes(console),
        ],
        lifespan=lifespan,
    )
