"""An operator's override on real SQLite and PostgreSQL: it decides alone, once, and is audited as an override."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import text

from gateway.approvals import ApprovalState, ApprovalStore, Requirement, Sealer
from gateway.audit import AuditRecorder, Redactor, verify
from gateway.calls import Call, Origin, Target
from gateway.errors import ApprovalConflict
from gateway.identity.principal import Principal
from gateway.storage import Database

pytestmark = pytest.mark.anyio

AGENT = Principal(agent="billing-bot", roles=("finance",), user="alice@example.com")


def _call(amount: int) -> Call:
    return Call(
        "tools/call",
        Origin(AGENT, session_id="sess-1"),
        "bank.transfer",
        {"amount": amount},
        target=Target("bank", "transfer"),
    )


async def test_an_override_decides_a_pending_approval_and_is_its_own_audit_event(database: Database) -> None:
    recorder = AuditRecorder(database, Redactor(), replica_id="cli-1")
    await recorder.start()
    try:
        store = ApprovalStore(database, Sealer([("k1", base64.b64encode(os.urandom(32)).decode())]), recorder=recorder)
        requirement = Requirement(approvers=("role:treasury",), quorum=2, expires_in=timedelta(minutes=5))
        held = [
            await store.create(
                _call(amount),
                requirement,
                policy_ids=("p",),
                reasons=("r",),
                redacted_arguments={},
                policy_version=None,
            )
            for amount in (1, 2)
        ]
        approved = await store.override(held[0].id, actor="admin", approve=True, reason="treasury away", comment="go")
        assert approved.state is ApprovalState.APPROVED and approved.sealed_arguments is not None
        assert await store.votes(held[0].id) == ()
        denied = await store.override(held[1].id, actor="admin", approve=False, reason="fraud")
        assert denied.state is ApprovalState.DENIED and denied.sealed_arguments is None
        with pytest.raises(ApprovalConflict, match="already approved"):
            await store.override(held[0].id, actor="admin", approve=False, reason="changed my mind")
    finally:
        await recorder.close()
    async with database.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT kind, content FROM audit_events ORDER BY seq"))).all()
    events = [orjson.loads(row.content)["data"] for row in rows if row.kind == "approval"]
    decided = [(e["approval_id"], e["action"], e["actor"], e["comment"]) for e in events if e["action"] != "created"]
    assert decided == [
        (held[0].id, "override", "admin", "treasury away"),
        (held[0].id, "approved", "admin", "go"),
        (held[1].id, "override", "admin", "fraud"),
        (held[1].id, "denied", "admin", None),
    ]
    assert next(e for e in events if e["action"] == "override")["details"] == {
        "approve": True,
        "override": True,
        "approvers": ["role:treasury"],
    }
    assert (await verify(database)).ok


async def test_an_override_of_an_approval_past_its_expiry_finds_it_expired(database: Database) -> None:
    now = [datetime(2026, 12, 8, 9, 0, tzinfo=UTC)]
    store = ApprovalStore(database, Sealer([("k1", base64.b64encode(os.urandom(32)).decode())]), clock=lambda: now[0])
    requirement = Requirement(approvers=("role:treasury",), expires_in=timedelta(minutes=5))
    held = await store.create(
        _call(1), requirement, policy_ids=("p",), reasons=("r",), redacted_arguments={}, policy_version=None
    )
    now[0] += timedelta(minutes=6)
    with pytest.raises(ApprovalConflict, match="already expired"):
        await store.override(held.id, actor="admin", approve=True, reason="late")
