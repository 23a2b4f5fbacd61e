"""The `/api/v1/approvals` JSON API over ASGI, on the real approval and user stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio
import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message

from gateway.approvals import Approval, ApprovalStore, Requirement, Sealer
from gateway.calls import Call, Origin, Target
from gateway.front.approvals_api import ApprovalFeed, approvals_routes
from gateway.identity.api_keys import ApiKeyStore
from gateway.identity.principal import Principal
from gateway.identity.users import UserStore
from gateway.storage import Database

pytestmark = pytest.mark.anyio

AGENT = Principal(agent="billing-bot", roles=("finance",), user="alice")
SECRET = "s3cr3t-wire-transfer-token"
KEY = base64.b64encode(os.urandom(32)).decode()


@dataclass
class World:
    database: Database
    store: ApprovalStore
    client: httpx.AsyncClient
    keys: dict[str, str]
    app: Starlette

    def as_(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}

    async def hold(self, requirement: Requirement | None = None, n: int = 0) -> Approval:
        call = Call(
            "tools/call",
            Origin(AGENT, session_id="sess-1"),
            "bank.transfer",
            {"account": "DE00 1234", "amount": 1250.5, "token": SECRET, "n": n},
            reasoning="pay invoice 42",
            workflow="wf-7",
            target=Target("bank", "transfer"),
        )
        return await self.store.create(
            call,
            requirement or Requirement(approvers=("role:treasury",), quorum=2, expires_in=timedelta(minutes=30)),
            policy_ids=("p-transfers",),
            reasons=("transfers need treasury",),
            redacted_arguments={"account": "DE00 1234", "amount": 1250.5, "token": "[REDACTED]", "n": n},
            policy_version="v12",
        )


def approval_store(database: Database) -> ApprovalStore:
    return ApprovalStore(database, Sealer([("k1", KEY)]))


async def _people(database: Database) -> dict[str, str]:
    users = UserStore(database)
    keys = {}
    for name, roles in (("bob", ("treasury",)), ("dave", ("treasury",)), ("alice", ("treasury",)), ("eve", ())):
        _, keys[name] = await users.create(name, roles)
    _, keys["agent"] = await ApiKeyStore(database).create("billing-bot", ("treasury",))
    return keys


@pytest.fixture
async def world(database: Database) -> AsyncIterator[World]:
    store = approval_store(database)
    feed = ApprovalFeed(store, poll=0.05)
    app = Starlette(routes=approvals_routes(store, UserStore(database), feed=feed))
    keys = await _people(database)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            yield World(database, store, client, keys, app)
    finally:
        feed.close()


async def test_people_only_never_agents(world: World) -> None:
    approval = await world.hold()
    for path in ("/api/v1/approvals", f"/api/v1/approvals/{approval.id}"):
        for headers in ({}, world.as_("agent"), {"Authorization": "Bearer agu_forged"}, {"Authorization": "Basic x"}):
            refused = await world.client.get(path, headers=headers)
            assert refused.status_code == 401, (path, headers)
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert set(refused.json()) == {"error", "detail"} and "\n" not in refused.json()["detail"]
    agent = await world.client.get("/api/v1/approvals", headers=world.as_("agent"))
    assert "agent" in agent.json()["detail"]
    assert (await world.client.get("/api/v1/approvals", headers=world.as_("eve"))).status_code == 200


async def test_list_in_pages_and_get_one(world: World) -> None:
    made = [await world.hold(n=n) for n in range(3)]
    page = await world.client.get("/api/v1/approvals", params={"limit": 2}, headers=world.as_("bob"))
    assert page.status_code == 200
    body = page.json()
    assert [a["id"] for a in body["approvals"]] == [made[2].id, made[1].id]
    rest = await world.client.get("/api/v1/approvals", params={"cursor": body["next_cursor"]}, headers=world.as_("bob"))
    assert [a["id"] for a in rest.json()["approvals"]] == [made[0].id] and rest.json()["next_cursor"] is None
    pending = await world.client.get("/api/v1/approvals", params={"state": "pending"}, headers=world.as_("bob"))
    assert len(pending.json()["approvals"]) == 3
    approved = await world.client.get("/api/v1/approvals", params={"state": "approved"}, headers=world.as_("bob"))
    assert approved.json() == {"approvals": [], "next_cursor": None}

    one = await world.client.get(f"/api/v1/approvals/{made[0].id}", headers=world.as_("bob"))
    assert one.status_code == 200
    shown = one.json()
    assert shown["agent"] == "billing-bot" and shown["user"] == "alice" and shown["roles"] == ["finance"]
    assert (shown["tool"], shown["connector"], shown["original_tool"]) == ("bank.transfer", "bank", "transfer")
    assert shown["arguments"]["token"] == "[REDACTED]" and shown["reasoning"] == "pay invoice 42"
    assert shown["workflow"] == "wf-7" and shown["reasons"] == ["transfers need treasury"]
    assert shown["policy_ids"] == ["p-transfers"] and shown["approvers"] == ["role:treasury"]
    assert shown["quorum"] == 2 and shown["votes"] == [] and shown["state"] == "pending"
    assert 0 < shown["seconds_left"] <= 1800 and shown["expires_at"] and shown["created_at"]
    for key in ("escalate_at", "decided_at", "executed_at", "finished_at"):
        assert key in shown
    assert SECRET not in one.text and "sealed" not in one.text and '"result"' not in one.text

    for params, word in (({"limit": "lots"}, "limit"), ({"limit": 0}, "limit"), ({"state": "maybe"}, "state")):
        bad = await world.client.get("/api/v1/approvals", params=params, headers=world.as_("bob"))
        assert bad.status_code == 400 and word in bad.json()["detail"]
        assert bad.json()["error"] == "InvalidApprovalQuery"
    bad = await world.client.get("/api/v1/approvals", params={"cursor": "forged"}, headers=world.as_("bob"))
    assert bad.status_code == 400
    unknown = await world.client.get("/api/v1/approvals/nope", headers=world.as_("bob"))
    assert unknown.status_code == 404 and unknown.json()["error"] == "UnknownApproval"


async def test_without_a_store_the_api_says_approvals_are_not_configured(database: Database) -> None:
    keys = await _people(database)
    app = Starlette(routes=approvals_routes(None, UserStore(database)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        for path in ("/api/v1/approvals", "/api/v1/approvals/x"):
            assert (await client.get(path)).status_code == 401
            response = await client.get(path, headers={"Authorization": f"Bearer {keys['bob']}"})
            assert response.status_code == 503 and response.json()["error"] == "ApprovalsNotConfigured"


async def test_approvals_reach_quorum_and_a_decided_one_is_a_conflict(world: World) -> None:
    approval = await world.hold()
    path = f"/api/v1/approvals/{approval.id}"
    first = await world.client.post(f"{path}/approve", json={"comment": "looks right"}, headers=world.as_("bob"))
    assert first.status_code == 200
    assert first.json()["state"] == "pending" and first.json()["approvals"] == 1
    assert first.json()["votes"][0]["user"] == "bob" and first.json()["votes"][0]["comment"] == "looks right"
    assert first.json()["votes"][0]["time"]
    second = await world.client.post(f"{path}/approve", headers=world.as_("dave"))
    assert second.status_code == 200
    assert second.json()["state"] == "approved" and second.json()["decided_at"] is not None
    assert [vote["user"] for vote in second.json()["votes"]] == ["bob", "dave"]
    assert SECRET not in second.text

    for action in ("approve", "deny", "cancel"):
        late = await world.client.post(f"{path}/{action}", json={"comment": "too late"}, headers=world.as_("dave"))
        assert late.status_code == 409, action
        assert late.json()["error"] == "ApprovalConflict" and late.json()["state"] == "approved"
    unknown = await world.client.post("/api/v1/approvals/nope/approve", headers=world.as_("bob"))
    assert unknown.status_code == 404 and unknown.json()["error"] == "UnknownApproval"


async def test_a_denial_needs_a_comment(world: World) -> None:
    approval = await world.hold()
    path = f"/api/v1/approvals/{approval.id}/deny"
    for body in (None, {}, {"comment": "  "}, {"comment": 7}, [1]):
        refused = await world.client.post(path, json=body, headers=world.as_("bob"))
        assert refused.status_code == 400 and refused.json()["error"] == "InvalidApprovalRequest", body
    broken = await world.client.post(path, content=b"{not json", headers=world.as_("bob"))
    assert broken.status_code == 400
    huge = await world.client.post(path, json={"comment": "x" * 20_000}, headers=world.as_("bob"))
    assert huge.status_code == 400
    assert (await world.store.get(approval.id)).state.value == "pending"
    denied = await world.client.post(path, json={"comment": "wrong account"}, headers=world.as_("bob"))
    assert denied.status_code == 200 and denied.json()["state"] == "denied"
    assert denied.json()["votes"][0] == {**denied.json()["votes"][0], "approve": False, "comment": "wrong account"}


async def test_self_approval_and_strangers_are_refused(world: World) -> None:
    approval = await world.hold()
    path = f"/api/v1/approvals/{approval.id}"
    own = await world.client.post(f"{path}/approve", headers=world.as_("alice"))  # the user the call acts for
    assert own.status_code == 403 and own.json()["error"] == "SelfApproval"
    stranger = await world.client.post(f"{path}/approve", headers=world.as_("eve"))
    assert stranger.status_code == 403 and stranger.json()["error"] == "NotAnApprover"
    stranger = await world.client.post(f"{path}/cancel", json={"comment": "mine now"}, headers=world.as_("eve"))
    assert stranger.status_code == 403 and stranger.json()["error"] == "NotAnApprover"
    agent = await world.client.post(f"{path}/approve", headers=world.as_("agent"))
    assert agent.status_code == 401
    assert (await world.store.votes(approval.id)) == ()


async def test_its_user_or_an_approver_cancels_with_a_comment(world: World) -> None:
    first, second = await world.hold(n=1), await world.hold(n=2)
    bare = await world.client.post(f"/api/v1/approvals/{first.id}/cancel", headers=world.as_("alice"))
    assert bare.status_code == 400
    by_user = await world.client.post(
        f"/api/v1/approvals/{first.id}/cancel", json={"comment": "no longer needed"}, headers=world.as_("alice")
    )
    assert by_user.status_code == 200 and by_user.json()["state"] == "cancelled"
    assert by_user.json()["ended_by"] == "alice" and by_user.json()["end_comment"] == "no longer needed"
    by_approver = await world.client.post(
        f"/api/v1/approvals/{second.id}/cancel", json={"comment": "duplicate"}, headers=world.as_("bob")
    )
    assert by_approver.status_code == 200 and by_approver.json()["state"] == "cancelled"


@dataclass
class EventReader:
    """An SSE client driving the ASGI app directly, chunk by chunk, and disconnecting when done.

    (httpx's ASGI transport hands back a body only once the app has finished, which a stream never does.)
    """

    app: ASGIApp
    headers: dict[str, str]
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    text: str = ""
    _gone: anyio.Event = field(default_factory=anyio.Event)
    _chunks: Any = None

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        send_chunk, self._chunks = anyio.create_memory_object_stream[Message](100)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/api/v1/approvals/events",
            "raw_path": b"/api/v1/approvals/events",
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in self.headers.items()],
            "server": ("gateway", 80),
            "client": ("127.0.0.1", 1234),
        }
        requested = False

        async def receive() -> Message:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self._gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            await send_chunk.send(message)

        task_status.started()
        async with send_chunk:
            await self.app(scope, receive, send)

    async def _read(self) -> None:
        message = await self._chunks.receive()
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.response_headers = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            self.text += message.get("body", b"").decode()

    async def until(self, text: str) -> None:
        """Read until `text` has arrived (the caller bounds the wait)."""
        while text not in self.text:
            await self._read()

    async def events(self, count: int) -> list[dict[str, Any]]:
        """The first `count` approval events since the connection, in order."""
        while True:
            blocks = [block for block in self.text.split("\n\n")[:-1] if block.startswith("event: approval\n")]
            if len(blocks) >= count:
                return [orjson.loads(block.split("data: ", 1)[1]) for block in blocks[:count]]
            await self._read()

    async def until_event(self, name: str) -> list[dict[str, Any]]:
        """Every approval event up to and including the first named `name`."""
        count = 1
        while (events := await self.events(count))[-1]["event"] != name:
            count += 1
        return events

    def leave(self) -> None:
        self._gone.set()


async def _stream(reader: EventReader, act: Any, last: str) -> list[dict[str, Any]]:
    """Connect, `act`, and read events up to the first named `last`, within a deadline."""
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            await tasks.start(reader.run)
            await reader.until(": connected\n\n")  # subscribed: what happens from now on is sent
            await act()
            events = await reader.until_event(last)
            reader.leave()  # the app must end the response when the client goes away
    return events


async def test_the_event_stream_sends_this_process_s_changes_as_they_commit(world: World) -> None:
    earlier = await world.hold(n=0)  # before the connection: not news
    reader = EventReader(world.app, world.as_("bob"))
    made: list[Approval] = []

    async def act() -> None:
        made.append(await world.hold(n=1))
        denied = await world.client.post(
            f"/api/v1/approvals/{made[0].id}/deny", json={"comment": "wrong account"}, headers=world.as_("dave")
        )
        assert denied.status_code == 200

    events = await _stream(reader, act, "decided")
    assert reader.status == 200 and reader.response_headers["content-type"].startswith("text/event-stream")
    assert [(e["event"], e["id"], e["state"]) for e in events] == [
        ("created", made[0].id, "pending"),
        ("decided", made[0].id, "denied"),
    ]
    assert events[1]["votes"][0]["comment"] == "wrong account"
    assert earlier.id not in reader.text and SECRET not in reader.text


async def test_the_event_stream_finds_other_processes_changes_by_polling(world: World) -> None:
    elsewhere = World(world.database, approval_store(world.database), world.client, world.keys, world.app)
    reader = EventReader(world.app, world.as_("bob"))
    made: list[Approval] = []

    async def act() -> None:
        # As the CLI or another replica would: these changes are not heard by this process's store.
        made.append(await elsewhere.hold(n=1))
        await reader.until_event("created")
        await elsewhere.store.vote(made[0].id, user="bob", roles=("treasury",), approve=True)
        await elsewhere.store.vote(made[0].id, user="dave", roles=("treasury",), approve=True, comment="fine")

    events = await _stream(reader, act, "decided")
    assert events[0]["event"] == "created" and events[0]["id"] == made[0].id
    # A vote short of quorum is seen unless the decision came before the next poll.
    assert [e["event"] for e in events[1:]] in (["decided"], ["voted", "decided"])
    assert events[-1]["state"] == "approved" and [v["user"] for v in events[-1]["votes"]] == ["bob", "dave"]


async def test_an_idle_stream_sends_keep_alives_and_refuses_agents(database: Database) -> None:
    store = approval_store(database)
    feed = ApprovalFeed(store, poll=10, keep_alive=0.05)
    app = Starlette(routes=approvals_routes(store, UserStore(database), feed=feed))
    keys = await _people(database)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        refused = await client.get("/api/v1/approvals/events", headers={"Authorization": f"Bearer {keys['agent']}"})
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    reader = EventReader(app, {"Authorization": f"Bearer {keys['bob']}"})
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            await tasks.start(reader.run)
            await reader.until(": keep-alive\n\n")
            reader.leave()
    feed.close()


async def test_the_openapi_document_lists_every_route(world: World) -> None:
    document = await world.client.get("/api/v1/openapi.json")  # no key: it holds no data
    assert document.status_code == 200
    paths = document.json()["paths"]
    routes = approvals_routes(world.store, UserStore(world.database))
    assert {route.path for route in routes} == set(paths)
    for route in routes:
        for method in route.methods or ():
            if method != "HEAD":
                assert method.lower() in paths[route.path], (route.path, method)
