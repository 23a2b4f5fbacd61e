"""`/healthz` (the process answers) and `/readyz` (it can serve: storage up, backends listed).

`/readyz` answers 503 only when the gateway cannot serve anyone (storage down, no access
policies loaded, still starting); a dead
backend makes it `degraded` with 200, because every other backend still works and a load
balancer that dropped the gateway would take them all away.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.connectors.base import HealthState
from gateway.errors import StorageUnavailable
from gateway.runtime import GatewayRuntime


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def readyz_endpoint(runtime: GatewayRuntime):  # noqa: ANN201 - a Starlette endpoint
    async def readyz(request: Request) -> JSONResponse:
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
        backends = {
            name: {
                "state": c.health.state.value,
                "detail": c.health.detail,
                "protocol_version": c.health.protocol_version,
                "restarts": c.health.restarts,
                "problems": list(c.health.problems),
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
        }
        if not policies.loaded:
            # Without policies every request is denied: not ready to serve anyone.
            status_code = 503
        if not runtime.started:
            status_code = 503
        degraded = any(b["state"] != HealthState.HEALTHY.value for b in backends.values())
        status = "not ready" if status_code != 200 else ("degraded" if degraded else "ready")
        return JSONResponse({"status": status, "checks": checks, "backends": backends}, status_code=status_code)

    return readyz
