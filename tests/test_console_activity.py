"""The console's Activity and Audit pages, served by the real app in-process to a signed-in viewer.

Calls are recorded by a real audit recorder (and approvals by the real store) on the gateway's
own database, with the reasons the pipeline writes; the tests read the pages as a person would:
which calls are listed, in what order, what a call's page says, what a download holds.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text

from audit_calls import audit_call
from gateway.app import create_app
from gateway.approvals import ApprovalStore, Requirement, Sealer
from gateway.audit import AuditRecorder, Redactor, Timings, export
from gateway.audit.chain import chain_hash, event_content
from gateway.audit.entry import CONSOLE
from gateway.audit.query import search_events
from gateway.calls import Call, Origin, Target
from gateway.config import load_config
from gateway.console import audit_export, audit_search
from gateway.holding import ended_message
from gateway.identity.principal import Principal
from gateway.identity.users import UserStore
from gateway.storage import Database
from harness import write_gateway_config

pytestmark = pytest.mark.anyio

KEY = base64.b64encode(os.urandom(32)).decode()
BILLING = Principal(agent="billing-bot", roles=("finance",), user="alice@example.com")
SUPPORT = Principal(agent="support-bot", roles=("support",), user="bob@example.com")
SECRET = "sk_live_CANARY4eC39HqLyjWDarjtT1zdp7dc"
_CALL_LINK = re.compile(r'href="/ui/activity/([0-9a-f]{32})"')


@dataclass
class World:
    client: httpx.AsyncClient
    transport: httpx.ASGITransport
    database: Database
    recorder: AuditRecorder
    approvals: ApprovalStore
    csrf: str

    async def call(
        self,
        principal: Principal,
        tool: str,
        *,
        decision: str = "allow",
        outcome: str = "ok",
        policy_ids: tuple[str, ...] = ("p-allow-all",),
        reason: str | None = "allowed by p-allow-all",
        arguments: Any = None,
        when: datetime | None = None,
        total_ms: float = 12.5,
    ) -> str:
        """Record a call and its outcome as the pipeline does; its id."""
        handle = await self.recorder.record_call(
            audit_call(principal, tool, arguments=arguments, reasoning=f"{principal.agent} needs {tool}"),
            decision=decision,
            policy_ids=policy_ids,
            reason=reason,
            time=when,
        )
        await self.recorder.record_outcome(handle, outcome=outcome, timings=Timings(0.2, total_ms - 1, total_ms))
        return handle.call_id

    async def page(self, path: str, *, status: int = 200, **headers: str) -> str:
        answer = await self.client.get(path, headers=headers)
        assert answer.status_code == status, (path, answer.status_code, answer.text[:500])
        assert "style=" not in answer.text and answer.text.count("<script") <= 1  # the strict CSP holds
        return answer.text


def listed(html: str) -> list[str]:
    """The call ids a page lists, in its order."""
    return _CALL_LINK.findall(html)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    config_path = write_gateway_config(
        tmp_path, {}, extra=f'\n[approvals]\nsealing_keys = [{{ id = "k1", key = "{KEY}" }}]\n'
    )
    config = load_config(config_path)
    app = create_app(config)
    async with app.router.lifespan_context(app):
        database = Database(config.gateway.storage.url)
        recorder = AuditRecorder(database, Redactor(), replica_id="console-tests")
        await recorder.start()
        _, key = await UserStore(database).create("vera", roles=["viewer"])
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                csrf = await _sign_in(client, key)
                approvals = ApprovalStore(database, Sealer([("k1", KEY)]), recorder=recorder)
                yield World(client, transport, database, recorder, approvals, csrf)
        finally:
            await recorder.close()
            await database.close()


async def _sign_in(client: httpx.AsyncClient, key: str) -> str:
    """Sign in with the form, as a person does; the session's CSRF token for later writes."""
    form = await client.get("/ui/login")
    login_csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert login_csrf is not None
    signed_in = await client.post("/ui/login", data={"csrf": login_csrf[1], "key": key, "next": "/ui/activity"})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/ui/activity"
    page = await client.get("/ui/activity")
    token = re.search(r'data-csrf="([^"]+)"', page.text)
    assert page.status_code == 200 and token is not None
    return token[1]


async def test_activity_lists_calls_newest_first_and_filters_narrow_the_list(world: World) -> None:
    old = await world.call(BILLING, "bank.transfer", when=datetime.now(UTC) - timedelta(days=3))
    lookup = await world.call(BILLING, "crm.lookup", total_ms=42.0)
    denied = await world.call(
        SUPPORT, "crm.delete", decision="deny", outcome="denied", policy_ids=("p-no-deletes",), reason="no deletes"
    )
    newest = await world.page("/ui/activity")
    assert listed(newest) == [denied, lookup, old]
    row = newest[newest.index(lookup) :].split("</tr>")[0]
    for shown in ("billing-bot", "alice@example.com", "crm.lookup", "allow", "42.0", ">ok<"):
        assert shown in row, shown
    assert 'data-live="/ui/activity" data-live-on="approvals tick"' in newest

    for query, expected in (
        ("agent=billing-bot", [lookup, old]),
        ("tool=crm.delete", [denied]),
        ("decision=deny", [denied]),
        ("outcome=ok", [lookup, old]),
        ("agent=billing-bot&tool=crm.lookup", [lookup]),
        ("since=1h", [denied, lookup]),
        ("until=2d", [old]),
        (f"since={(datetime.now(UTC) - timedelta(days=4)).date().isoformat()}&until=1d", [old]),
        ("agent=nobody", []),
    ):
        html = await world.page(f"/ui/activity?{query}")
        assert listed(html) == expected, query
    assert "No calls match." in await world.page("/ui/activity?agent=nobody")


async def test_older_pages_reach_every_call_and_only_the_first_page_refreshes(world: World) -> None:
    ids = [await world.call(BILLING, f"tool.{n}") for n in range(57)]
    first = await world.page("/ui/activity?agent=billing-bot")
    assert listed(first) == ids[::-1][:50] and "data-live=" in first
    older = re.search(r'href="(/ui/activity\?[^"]*cursor=[^"]+)" rel="next">Older', first)
    assert older is not None
    second = await world.page(older[1].replace("&amp;", "&"))
    assert listed(second) == ids[::-1][50:] and "data-live=" not in second
    assert "Older →" not in second and 'href="/ui/activity?agent=billing-bot">← Newest' in second

    # The console's script asks for the first page's rows alone, and gets the newest call.
    newer = await world.call(BILLING, "tool.new")
    fragment = await world.page("/ui/activity?agent=billing-bot", **{"X-Requested-With": "console"})
    assert "<html" not in fragment and listed(fragment)[0] == newer


async def test_a_filter_checked_row_by_row_says_how_far_back_it_looked(world: World, monkeypatch) -> None:
    monkeypatch.setattr(audit_search, "SCAN_LIMIT", 5)
    denied = await world.call(SUPPORT, "crm.delete", decision="deny", outcome="denied")
    for n in range(7):
        await world.call(BILLING, f"tool.{n}")
    first = await world.page("/ui/activity?decision=deny")
    assert listed(first) == [] and "Looked through 5 calls back to" in first
    older = re.search(r'href="(/ui/activity\?[^"]*cursor=[^"]+)" rel="next">Older', first)
    assert older is not None
    assert listed(await world.page(older[1].replace("&amp;", "&"))) == [denied]


async def test_a_calls_page_shows_its_decision_policies_reason_and_the_approval_that_held_it(world: World) -> None:
    held_call = Call(
        "tools/call",
        Origin(BILLING),
        "bank.transfer",
        {"amount": 1250, "token": SECRET},
        target=Target("bank", "transfer"),
    )
    approval = await world.approvals.create(
        held_call,
        Requirement(approvers=("role:treasury",), quorum=1, expires_in=timedelta(minutes=30)),
        policy_ids=("p-hold-transfers",),
        reasons=("transfers need treasury",),
        redacted_arguments={"amount": 1250, "token": "[REDACTED]"},
        policy_version=None,
    )
    approval = await world.approvals.vote(
        approval.id, user="bob", roles=("treasury",), approve=False, comment="not this month"
    )
    (denial,) = await world.approvals.votes(approval.id)
    call_id = await world.call(
        BILLING,
        "bank.transfer",
        decision="hold",
        outcome="denied",
        policy_ids=("p-hold-transfers",),
        reason=ended_message("bank.transfer", approval, denial),
        arguments={"amount": 1250, "token": SECRET},
    )
    html = await world.page(f"/ui/activity/{call_id}")
    assert '<span class="state hold">hold</span>' in html and "<code>p-hold-transfers</code>" in html
    assert f"its approval {approval.id} was denied by bob" in html and "not this month" in html
    assert "The call's record names this approval." in html
    assert f'href="/ui/approvals/{approval.id}"' in html and '<span class="state denied">denied</span>' in html
    assert "bob denied: “not this month”" in html
    assert "Call event" in html and "Outcome event" in html and "prev_hash" in html
    assert 'href="/ui/activity?agent=billing-bot"' in html and "alice@example.com" in html
    assert SECRET not in html and "[REDACTED" in html


async def test_a_held_call_that_names_no_approval_lists_nearby_ones_as_not_linked(world: World) -> None:
    nearby = await world.approvals.create(
        Call("tools/call", Origin(SUPPORT), "crm.purge", {"all": True}, target=Target("crm", "purge")),
        Requirement(approvers=("role:ops",), quorum=1, expires_in=timedelta(minutes=30)),
        policy_ids=("p-hold-purges",),
        reasons=("purges need ops",),
        redacted_arguments={"all": True},
        policy_version=None,
    )
    call_id = await world.call(
        SUPPORT,
        "crm.purge",
        decision="hold",
        outcome="denied",
        policy_ids=("p-hold-purges",),
        reason="denied after approval: no policy permits it",
    )
    html = await world.page(f"/ui/activity/{call_id}")
    assert "Not linked in the log" in html and f'href="/ui/approvals/{nearby.id}"' in html
    allowed = await world.call(SUPPORT, "crm.purge")
    assert 'id="approval-heading"' not in await world.page(f"/ui/activity/{allowed}")


async def test_an_unknown_call_is_a_not_found_page(world: World) -> None:
    html = await world.page("/ui/activity/0123456789abcdef0123456789abcdef", status=404)
    assert "There is no such call." in html


async def test_a_mistyped_search_is_explained_on_the_page_not_an_error(world: World) -> None:
    await world.call(BILLING, "crm.lookup")
    for path, message in (
        ("/ui/activity?since=yesterday", "Since: “yesterday” is not a time"),
        ("/ui/activity?until=soon", "Until: “soon” is not a time"),
        ("/ui/activity?outcome=fine", "“fine” is not an outcome"),
        ("/ui/activity?since=1h&until=2h", "Since is not before until"),
        ("/ui/activity?cursor=forged", "The cursor is not one this gateway returned"),
        ("/ui/audit?kind=console&agent=billing-bot", "Agent filters calls only"),
        ("/ui/audit?limit=lots", "Show: “lots” is not a number from 1 to 1000"),
        ("/ui/audit?kind=everything", "“everything” is not a kind of event"),
        ("/ui/audit/export?since=tomorrow", "Since: “tomorrow” is not a time"),
    ):
        html = await world.page(path, status=400)
        assert message in html and 'role="alert"' in html, path
    assert 'value="yesterday"' in await world.page("/ui/activity?since=yesterday", status=400)


async def test_the_audit_page_searches_every_kind_of_event(world: World) -> None:
    call_id = await world.call(BILLING, "crm.lookup")
    await world.recorder.record_auth_refused("unknown API key", "10.0.0.9", path="/mcp", auth_method="api_key")
    approval = await world.approvals.create(
        Call("tools/call", Origin(BILLING), "bank.transfer", {"amount": 1}, target=Target("bank", "transfer")),
        Requirement(approvers=("role:treasury",), quorum=1, expires_in=timedelta(minutes=30)),
        policy_ids=("p-hold",),
        reasons=("transfers need treasury",),
        redacted_arguments={"amount": 1},
        policy_version=None,
    )
    assert listed(await world.page("/ui/audit?agent=billing-bot&limit=5")) == [call_id]
    refused = await world.page("/ui/audit?kind=auth")
    assert "unknown API key" in refused and "10.0.0.9" in refused
    held = await world.page("/ui/audit?kind=approval&since=1h")
    assert f'href="/ui/approvals/{approval.id}"' in held and "created" in held
    console = await world.page("/ui/audit?kind=console")
    assert "vera sign_in" in console  # signing in to run these tests is on record
    assert "gateway audit search --kind console" in console
    assert "No events of this kind match." in await world.page("/ui/audit?kind=recovered")


async def test_verification_runs_only_when_asked_is_recorded_and_names_tampering(world: World) -> None:
    await world.call(BILLING, "crm.lookup")
    before = await world.page("/ui/audit")
    assert "No verification is recorded recently." in before and "Verify the chain now" in before
    refused = await world.client.post("/ui/audit/verify", data={})
    assert refused.status_code == 403

    verified = await world.client.post("/ui/audit/verify?kind=approval", data={"csrf": world.csrf})
    assert verified.status_code == 200
    assert re.search(r"Intact: [\d,]+ events in \d+ chain\(s\)", verified.text)
    assert re.search(r"Verified just now by vera at .*, in \d+\.\d\d s", verified.text)
    assert '<option value="approval" selected>' in verified.text  # the search stays as it was
    recorded = await search_events(world.database, CONSOLE)
    (event,) = [event for event in recorded.events if event.data["action"] == "audit_verified"]
    assert event.data["user"] == "vera" and event.data["details"]["ok"] is True
    assert "Last verified by vera" in await world.page("/ui/audit")

    async with world.database.engine.begin() as connection:
        await connection.execute(
            text("UPDATE audit_events SET content = replace(content, 'crm.lookup', 'crm.LOOKUP') WHERE kind = 'call'")
        )
    tampered = await world.client.post("/ui/audit/verify", data={"csrf": world.csrf})
    assert "Not intact: replica console-tests seq 1: changed" in tampered.text


async def test_a_download_holds_the_search_as_gateway_audit_export_writes_it(
    world: World, tmp_path: Path, monkeypatch
) -> None:
    billing = [await world.call(BILLING, f"crm.{n}") for n in range(3)]
    await world.call(SUPPORT, "crm.delete", decision="deny", outcome="denied")
    download = await world.client.get("/ui/audit/export?agent=billing-bot")
    assert download.status_code == 200
    assert re.fullmatch(
        r'attachment; filename="audit-call-\d{8}T\d{6}Z\.jsonl"', download.headers["content-disposition"]
    )
    lines = download.text.splitlines()
    events = [orjson.loads(line) for line in lines]
    assert [(event["call_id"], event["kind"]) for event in events] == [
        (call_id, kind) for call_id in reversed(billing) for kind in ("call", "outcome")
    ]
    for event in events:  # every line carries what recomputing its hash needs
        content = event_content(
            replica_id=event["replica"],
            seq=event["seq"],
            kind=event["kind"],
            time=datetime.fromisoformat(event["time"]),
            call_id=event["call_id"],
            data=event["data"],
        )
        assert chain_hash(event["prev_hash"], content) == event["hash"]
    whole = tmp_path / "whole.jsonl"
    await export(world.database, whole)
    assert set(lines) <= set(whole.read_text().splitlines())  # line for line what the CLI writes

    recorded = await search_events(world.database, CONSOLE)
    (exported,) = [event for event in recorded.events if event.data["action"] == "audit_exported"]
    assert exported.data["user"] == "vera" and exported.data["details"]["search"] == "agent=billing-bot"

    monkeypatch.setattr(audit_export, "MAX_RESULTS", 2)
    bounded = await world.client.get("/ui/audit/export?kind=console")
    assert len(bounded.text.splitlines()) == 2


async def test_signed_out_visitors_are_sent_to_sign_in(world: World) -> None:
    async with httpx.AsyncClient(transport=world.transport, base_url="http://127.0.0.1") as stranger:
        for path in ("/ui/activity", "/ui/audit?kind=auth", "/ui/audit/export"):
            answer = await stranger.get(path)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login?next=")
        assert (await stranger.post("/ui/audit/verify")).status_code == 401
