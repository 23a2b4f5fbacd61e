"""The `/api/audit` JSON API over real HTTP semantics (ASGI), against real databases."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from audit_calls import audit_call
from gateway.audit import AuditRecorder, Redactor
from gateway.errors import AuthenticationFailed
from gateway.front.audit_api import audit_routes
from gateway.identity.principal import Principal
from gateway.storage import Database
from test_audit_query import assert_no_canary, record_canaries

pytestmark = pytest.mark.anyio

TOKENS = {
    "admin-token": Principal(agent="ops-console", roles=("auditor",)),
    "agent-token": Principal(agent="billing-bot", roles=("finance",)),
}


async def authenticate(request: Request) -> Principal:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or credential not in TOKENS:
        raise AuthenticationFailed("missing or unknown bearer credential")
    return TOKENS[credential]


@pytest.fixture
async def client(database):
    app = Starlette(routes=audit_routes(database, authenticate, frozenset({"auditor", "security"})))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        yield client


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_only_admins_read_the_log(database, client):
    for path in ("/api/audit/calls", "/api/audit/calls/x", "/api/audit/verify"):
        anonymous = await client.get(path)
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
        assert (await client.get(path, headers=_as("agent-token"))).status_code == 403
    assert (await client.get("/api/audit/verify", headers=_as("admin-token"))).status_code == 200


async def test_search_one_call_and_verify(database, client):
    recorder = AuditRecorder(database, Redactor(), replica_id="gw-1")
    await recorder.start()
    try:
        call_id = await record_canaries(recorder)
        for n in range(3):
            await recorder.record_call(
                audit_call(TOKENS["agent-token"], "crm.lookup", workflow=f"wf-{n}"), decision="allow"
            )
    finally:
        await recorder.close()

    page = await client.get("/api/audit/calls", params={"tool": "crm.lookup", "limit": 2}, headers=_as("admin-token"))
    assert page.status_code == 200
    body = page.json()
    assert [call["workflow_id"] for call in body["calls"]] == ["wf-2", "wf-1"]
    rest = await client.get(
        "/api/audit/calls", params={"tool": "crm.lookup", "cursor": body["next_cursor"]}, headers=_as("admin-token")
    )
    assert [call["workflow_id"] for call in rest.json()["calls"]] == ["wf-0"] and rest.json()["next_cursor"] is None

    everything = await client.get("/api/audit/calls", params={"since": "1h"}, headers=_as("admin-token"))
    assert len(everything.json()["calls"]) == 4
    assert_no_canary(everything.text, "the search API")

    one = await client.get(f"/api/audit/calls/{call_id}", headers=_as("admin-token"))
    assert one.status_code == 200 and one.json()["outcome"] == "backend_error"
    assert one.json()["name"] == "payments.charge"
    assert_no_canary(one.text, "the call API")
    assert (await client.get("/api/audit/calls/unknown", headers=_as("admin-token"))).status_code == 404

    verified = (await client.get("/api/audit/verify", headers=_as("admin-token"))).json()
    assert verified["ok"] is True and verified["events"] == 7

    bad = await client.get("/api/audit/calls", params={"limit": "lots"}, headers=_as("admin-token"))
    assert bad.status_code == 400 and "limit" in bad.json()["detail"]
    bad = await client.get("/api/audit/calls", params={"cursor": "forged"}, headers=_as("admin-token"))
    assert bad.status_code == 400


async def test_an_unreachable_database_is_a_503_with_retry_after():
    database = Database("postgresql+asyncpg://gateway:s3cret-pw@127.0.0.1:1/gateway")
    app = Starlette(routes=audit_routes(database, authenticate, frozenset({"auditor"})))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            for path in ("/api/audit/calls", "/api/audit/calls/x", "/api/audit/verify"):
                response = await client.get(path, headers=_as("admin-token"))
                assert response.status_code == 503, path
                assert int(response.headers["retry-after"]) > 0
                assert response.json()["error"] == "StorageUnavailable"
                assert "s3cret-pw" not in response.text
    finally:
        await database.close()
