"""`/healthz` (the process answers) and `/readyz` (it can serve: storage up, backends listed).

`/readyz` answers 503 only when the gateway cannot serve anyone (storage down, no access
policies loaded, still starting); a dead
backend makes it `degraded` with 200, because every other backend still works and a load
balancer that dropped the gateway would take them all away.

The status is public, for load balancers; the checks and backends behind it name what the
gateway fronts, so they are served only with the ops token (`ops_access.py`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.connectors.base import HealthState
from gateway.errors import StorageUnavailable
from gateway.ops_access import OpsAccess
from gateway.runtime import GatewayRuntime


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def readyz_endpoint(runtime: GatewayRuntime, access: OpsAccess):  # noqa: ANN201 - a Starlette endpoint
    async def readyz(request: Request) -> Response:
        # A request without credentials (a load balancer's) gets the status; one with credentials
        # asks for the details, and a wrong or unconfigured token is told so rather than ignored.
        wants_details = "authorization" in request.headers
        refusal = access.refusal(request, "/readyz details") if wants_details else None
        if refusal is not None:
            return refusal
        checks: dict[str, object] = {}
        status_code = 200
        try:
            await runtime.database.ping()
            checks["storage"] = {"state": "healthy"}
        except StorageUnavailable as exc:
            checks["storage"] = {"state": "unhealthy", "detail": str(exc)}
            status_code = 503
        # Informational: while signals reconnect, this process still serves; it only hears
        # the other processes' cancellations and change notices again once they are back.
        checks["signals"] = {"state": runtime.signals.state}
        problems = runtime.catalog.problems()
        backends = {
            name: {
                "state": _backend_state(c.health.state, problems.get(name, ())),
                "detail": c.health.detail,
                "protocol_version": c.health.protocol_version,
                "restarts": c.health.restarts,
                "problems": [*c.health.problems, *problems.get(name, ())],
            }
            for name, c in runtime.connectors.items()
        }
        policies = runtime.policy.status
        checks["policies"] = {
            "state": "loaded" if policies.loaded else "not loaded",
            "count": policies.policy_count,
            "loaded_at": policies.loaded_at.isoformat() if policies.loaded_at else None,
            "error": policies.last_error,
            "limitations": list(policies.limitations),
            "waiting": list(policies.waiting),
        }
        if not policies.loaded:
            # Without policies every request is denied: not ready to serve anyone.
            status_code = 503
        if not runtime.started:
            status_code = 503
        degraded = any(b["state"] != HealthState.HEALTHY.value for b in backends.values())
        status = "not ready" if status_code != 200 else ("degraded" if degraded else "ready")
        if not wants_details:
            return JSONResponse({"status": status}, status_code=status_code)
        return JSONResponse({"status": status, "checks": checks, "backends": backends}, status_code=status_code)

    return readyz


def _backend_state(state: HealthState, problems: tuple[str, ...]) -> str:
    """A connected backend whose file or names have a problem serves less than it should: `degraded`."""
    if problems and state is HealthState.HEALTHY:
        return "degraded"
    return state.value
