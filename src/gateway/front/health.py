"""`/healthz` (the process answers) and `/readyz` (it can serve: storage up, policies loaded).

`/readyz` answers 503 only when the gateway cannot serve anyone (storage down, no access
policies loaded, not started yet or stopping). Backends do not hold it back: the gateway serves
as soon as its own parts are ready, while its backends make their first connection attempts in
the background, each listing its tools as it connects. Its status says how the backends are:

- `ready`: every backend connected;
- `starting`: some backend is still in its first connection attempt, and none is worse;
- `degraded`: some backend is down or serves less than it should (its listing broke a bound,
  its file names a tool it lacks); 200 all the same, because every other backend still works
  and a load balancer that dropped the gateway would take them all away;
- `not ready`: 503, as above.

The status is public, for load balancers; the checks and backends behind it name what the
gateway fronts, so they are served only with the ops token (`gateway.front.ops_access`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.connectors.base import Health, HealthState
from gateway.errors import StorageUnavailable
from gateway.front.ops_access import Endpoint, OpsAccess
from gateway.policy import PolicyStatus


@dataclass(frozen=True, slots=True)
class Readiness:
    """What `/readyz` looks at, each read afresh for every request.

    The endpoint sees these and nothing else of the running gateway, so it cannot come to depend
    on how the gateway is put together; the composition root builds it from its parts.
    """

    #: Whether the gateway serves: its own parts started (backends may still be starting), not stopping yet.
    started: Callable[[], bool]
    #: One round trip to the database; raises `StorageUnavailable` when it does not answer.
    ping_storage: Callable[[], Awaitable[None]]
    #: `in-process`, `listening` or `reconnecting` (`gateway.signals`).
    signals_state: Callable[[], str]
    policies: Callable[[], PolicyStatus]
    #: Each backend's health, in connector order.
    backends: Callable[[], Mapping[str, Health]]
    #: Per connector, what is wrong with its file or its names (`Catalog.problems`).
    catalog_problems: Callable[[], Mapping[str, tuple[str, ...]]]


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def readyz_endpoint(readiness: Readiness, access: OpsAccess) -> Endpoint:
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
            await readiness.ping_storage()
            checks["storage"] = {"state": "healthy"}
        except StorageUnavailable as exc:
            checks["storage"] = {"state": "unhealthy", "detail": str(exc)}
            status_code = 503
        # Informational: while signals reconnect, this process still serves; it only hears
        # the other processes' cancellations and change notices again once they are back.
        checks["signals"] = {"state": readiness.signals_state()}
        problems = readiness.catalog_problems()
        backends = {
            name: {
                "state": _backend_state(health.state, problems.get(name, ())),
                "detail": health.detail,
                "protocol_version": health.protocol_version,
                "restarts": health.restarts,
                "problems": [*health.problems, *problems.get(name, ())],
            }
            for name, health in readiness.backends().items()
        }
        policies = readiness.policies()
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
        if not readiness.started():
            status_code = 503
        status = "not ready" if status_code != 200 else _serving_status({str(b["state"]) for b in backends.values()})
        if not wants_details:
            return JSONResponse({"status": status}, status_code=status_code)
        return JSONResponse({"status": status, "checks": checks, "backends": backends}, status_code=status_code)

    return readyz


def _backend_state(state: HealthState, problems: tuple[str, ...]) -> str:
    """A connected backend whose file or names have a problem serves less than it should: `degraded`."""
    if problems and state is HealthState.HEALTHY:
        return "degraded"
    return state.value


def _serving_status(states: set[str]) -> str:
    """A serving gateway's status: the worst of its backends' states, `starting` ranking below any problem."""
    if states - {HealthState.HEALTHY.value, HealthState.STARTING.value}:
        return "degraded"
    if HealthState.STARTING.value in states:
        return "starting"
    return "ready"
