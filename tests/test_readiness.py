"""`/readyz` from what it is handed alone: each check's effect on the status, without a running gateway."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import Route

from gateway.connectors.base import Health, HealthState
from gateway.errors import StorageUnavailable
from gateway.front.health import Readiness, readyz_endpoint
from gateway.front.ops_access import OpsAccess
from gateway.policy import PolicyStatus

pytestmark = pytest.mark.anyio

TOKEN = "t" * 32
LOADED = PolicyStatus(
    loaded=True, policy_count=2, loaded_at=datetime(2026, 1, 2, tzinfo=UTC), last_error=None, limitations=()
)


async def _answers() -> None:
    return None


def _ready(**backends: Health) -> Readiness:
    return Readiness(
        started=lambda: True,
        ping_storage=_answers,
        signals_state=lambda: "in-process",
        policies=lambda: LOADED,
        backends=lambda: backends,
        catalog_problems=dict,
    )


async def _readyz(readiness: Readiness, *, details: bool = True) -> tuple[int, dict[str, Any]]:
    app = Starlette(routes=[Route("/readyz", readyz_endpoint(readiness, OpsAccess(SecretStr(TOKEN))))])
    headers = {"Authorization": f"Bearer {TOKEN}"} if details else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        response = await client.get("/readyz", headers=headers)
    return response.status_code, response.json()


async def test_a_started_gateway_with_storage_and_policies_is_ready() -> None:
    status, body = await _readyz(_ready(crm=Health(HealthState.HEALTHY, protocol_version="2025-11-25")))
    assert status == 200
    assert body == {
        "status": "ready",
        "checks": {
            "storage": {"state": "healthy"},
            "signals": {"state": "in-process"},
            "policies": {
                "state": "loaded",
                "count": 2,
                "loaded_at": "2026-01-02T00:00:00+00:00",
                "error": None,
                "limitations": [],
                "waiting": [],
            },
        },
        "backends": {
            "crm": {"state": "healthy", "detail": "", "protocol_version": "2025-11-25", "restarts": 0, "problems": []}
        },
    }
    assert await _readyz(_ready(), details=False) == (200, {"status": "ready"})


async def _storage_down() -> None:
    raise StorageUnavailable("database sqlite:///gateway.db is unavailable: disk I/O error")


@pytest.mark.parametrize(
    "change",
    [
        {"ping_storage": _storage_down},
        {"started": lambda: False},
        {"policies": lambda: replace(LOADED, loaded=False, last_error="bad.cedar: syntax")},
    ],
    ids=["storage down", "not started", "no policies"],
)
async def test_what_leaves_nobody_served_answers_503(change: Mapping[str, Any]) -> None:
    readiness = replace(_ready(crm=Health(HealthState.HEALTHY)), **change)
    assert await _readyz(readiness, details=False) == (503, {"status": "not ready"})
    status, body = await _readyz(readiness)
    assert status == 503 and body["status"] == "not ready"
    if "ping_storage" in change:
        assert body["checks"]["storage"] == {
            "state": "unhealthy",
            "detail": "database sqlite:///gateway.db is unavailable: disk I/O error",
        }


async def test_a_dead_backend_or_a_catalog_problem_only_degrades() -> None:
    problem = "crm.toml: [tools.serch] names no tool of backend 'crm'"
    readiness = replace(
        _ready(crm=Health(HealthState.HEALTHY), erp=Health(HealthState.UNHEALTHY, detail="connection refused")),
        catalog_problems=lambda: {"crm": (problem,)},
    )
    status, body = await _readyz(readiness)
    assert (status, body["status"]) == (200, "degraded")
    assert body["backends"]["crm"]["state"] == "degraded" and body["backends"]["crm"]["problems"] == [problem]
    assert body["backends"]["erp"]["state"] == "unhealthy" and body["backends"]["erp"]["detail"] == "connection refused"


async def test_a_backend_in_its_first_attempt_leaves_the_gateway_serving_as_starting() -> None:
    first = Health(HealthState.STARTING, detail="first connection attempt under way")
    status, body = await _readyz(_ready(crm=Health(HealthState.HEALTHY), erp=first))
    assert (status, body["status"]) == (200, "starting")
    assert body["backends"]["erp"]["state"] == "starting"
    assert body["backends"]["erp"]["detail"] == "first connection attempt under way"
    assert await _readyz(_ready(erp=first), details=False) == (200, {"status": "starting"})
    # Anything worse than starting wins.
    down = Health(HealthState.UNHEALTHY, detail="connection refused")
    assert (await _readyz(_ready(erp=first, hr=down)))[1]["status"] == "degraded"
