"""`gateway approvals` as people run it, against approvals held in a real SQLite database.

The approvals are made here straight through `ApprovalStore.create`, as the gateway's hold stage
would; every command runs the real `gateway` in a subprocess.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from gateway.approvals import Approval, ApprovalState, ApprovalStore, Requirement, Sealer
from gateway.audit import verify
from gateway.audit.query import search_events
from gateway.calls import Call, Origin, Target
from gateway.identity.api_keys import ApiKeyStore
from gateway.identity.principal import Principal
from gateway.identity.users import UserStore
from gateway.storage import Database
from harness import run_cli, write_gateway_config

AGENT = Principal(agent="billing-bot", roles=("finance",), user="alice@example.com")
SECRET = "s3cr3t-wire-transfer-token"
LONG_NOTE = "x" * 500


class World:
    """A gateway config and its database, with users and held calls made directly in it."""

    def __init__(self, directory: Path) -> None:
        self.config = str(write_gateway_config(directory, {}))
        self.url = f"sqlite+aiosqlite:///{directory / 'gateway.db'}"
        self.sealer = Sealer([("k1", base64.b64encode(os.urandom(32)).decode())])

    def _with_database(self, action: Any) -> Any:
        async def run() -> Any:
            database = Database(self.url)
            try:
                await database.migrate()
                return await action(database)
            finally:
                await database.close()

        return anyio.run(run)

    def hold(self, *approvers: str, quorum: int = 1, arguments: dict[str, Any] | None = None) -> Approval:
        call = Call(
            "tools/call",
            Origin(AGENT, session_id="sess-1"),
            "bank.transfer",
            arguments or {"account": "DE00 1234", "amount": 1250.5, "token": SECRET, "note": LONG_NOTE},
            reasoning="pay invoice 42",
            workflow="wf-7",
            target=Target("bank", "transfer"),
        )
        requirement = Requirement(approvers=approvers, quorum=quorum, expires_in=timedelta(minutes=30))

        async def create(database: Database) -> Approval:
            return await ApprovalStore(database, self.sealer).create(
                call,
                requirement,
                policy_ids=("p-transfers",),
                reasons=("transfers over 1,000 need treasury",),
                redacted_arguments={"account": "DE00 1234", "amount": 1250.5, "token": "[REDACTED]", "note": LONG_NOTE},
                policy_version="v12",
            )

        approval: Approval = self._with_database(create)
        return approval

    def user(self, name: str, *roles: str) -> str:
        async def create(database: Database) -> str:
            _, key = await UserStore(database).create(name, roles)
            return key

        key: str = self._with_database(create)
        return key

    def agent_key(self) -> str:
        async def create(database: Database) -> str:
            _, key = await ApiKeyStore(database).create("billing-bot", ["treasury"])
            return key

        key: str = self._with_database(create)
        return key

    def revoke_keys_of(self, name: str) -> None:
        async def revoke(database: Database) -> None:
            users = UserStore(database)
            for key in (await users.get(name)).keys:
                await users.revoke_key(key.id)

        self._with_database(revoke)

    def state(self, approval_id: str) -> ApprovalState:
        async def read(database: Database) -> ApprovalState:
            return (await ApprovalStore(database, self.sealer).get(approval_id)).state

        state: ApprovalState = self._with_database(read)
        return state

    def approval_events(self) -> list[dict[str, Any]]:
        async def read(database: Database) -> list[dict[str, Any]]:
            assert (await verify(database)).ok
            page = await search_events(database, "approval", limit=500)
            return [event.data for event in reversed(page.events)]

        events: list[dict[str, Any]] = self._with_database(read)
        return events

    def cli(self, *args: str, key: str | None = None, check: bool = True, env: dict[str, str] | None = None) -> Any:
        command, *rest = args
        extra = ["--user-key", key] if key is not None else []
        return run_cli("approvals", command, "--config", self.config, *rest, *extra, check=check, env=env)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_list_and_show_give_an_approver_everything_but_secrets(world: World) -> None:
    approval = world.hold("role:treasury", "user:carol", quorum=2)
    world.hold("role:treasury", arguments={"amount": 5})
    table = world.cli("list").stdout
    assert approval.id in table and "billing-bot" in table and "0/2" in table and "in 29m" in table
    rows = [json.loads(line) for line in world.cli("list", "--json", "--limit", "1").stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["state"] == "pending"
    paged = world.cli("list", "--limit", "1")
    assert "--cursor" in paged.stderr
    assert world.cli("list", "--state", "approved").stdout.strip().splitlines() == [
        "ID  STATE  AGENT  USER  TOOL  VOTES  CREATED  EXPIRES"
    ]
    shown = world.cli("show", approval.id).stdout
    for expected in (
        "billing-bot",
        "alice@example.com",
        "bank.transfer",
        "connector 'bank'",
        "pay invoice 42",
        "transfers over 1,000 need treasury",
        "role:treasury, user:carol",
        "0 of 2 approvals",
        '"token": "[REDACTED]"',
        "(300 more characters)",
        "p-transfers",
    ):
        assert expected in shown, expected
    assert SECRET not in shown and LONG_NOTE not in shown
    details = json.loads(world.cli("show", approval.id, "--json").stdout)
    assert details["approvers"] == ["role:treasury", "user:carol"] and details["votes"] == []
    assert details["arguments"]["token"] == "[REDACTED]" and 0 < details["seconds_left"] <= 1800


def test_approvals_by_users_reach_quorum_and_are_shown_with_their_comments(world: World) -> None:
    approval = world.hold("role:treasury", quorum=2)
    bob, dave = world.user("bob", "treasury"), world.user("dave", "treasury")
    first = world.cli("approve", approval.id, "--comment", "invoice checked", key=bob)
    assert "1 of 2 approvals; still pending" in first.stdout
    second = world.cli("approve", approval.id, env={"GATEWAY_USER_KEY": dave})
    assert "Approved approval" in second.stdout and "2 of 2" in second.stdout
    assert world.state(approval.id) is ApprovalState.APPROVED
    shown = world.cli("show", approval.id).stdout
    assert "bob approved at" in shown and "invoice checked" in shown and "dave approved at" in shown
    late = world.cli("approve", approval.id, key=world.user("erin", "treasury"), check=False)
    assert late.returncode == 1 and "already approved" in late.stderr
    actions = [(e["action"], e["actor"]) for e in world.approval_events()]
    assert actions[-3:] == [("vote", "bob"), ("vote", "dave"), ("approved", "dave")]


def test_deny_needs_a_comment_and_ends_the_approval(world: World) -> None:
    approval = world.hold("role:treasury", "user:carol", quorum=2)
    carol = world.user("carol")
    silent = world.cli("deny", approval.id, key=carol, check=False)
    assert silent.returncode == 2 and "--comment" in silent.stderr
    denied = world.cli("deny", approval.id, "--comment", "wrong account", key=carol)
    assert f"Denied approval {approval.id}" in denied.stdout
    assert world.state(approval.id) is ApprovalState.DENIED
    again = world.cli("approve", approval.id, key=carol, check=False)
    assert again.returncode == 1 and "already denied" in again.stderr
    assert world.approval_events()[-2]["comment"] == "wrong account"


def test_people_who_may_not_decide_are_refused_in_one_line(world: World) -> None:
    approval = world.hold("role:treasury")
    refusals = {
        "self": (world.user("alice@example.com", "treasury"), "cannot decide it"),
        "stranger": (world.user("erin", "sales"), "not among the approvers"),
        "agent key": (world.agent_key(), "agent's API key"),
        "garbage": ("agu_nope", "malformed user key"),
    }
    world.user("frank", "treasury")
    world.revoke_keys_of("frank")
    for name, (key, reason) in refusals.items():
        refused = world.cli("approve", approval.id, key=key, check=False)
        assert refused.returncode == 1 and reason in refused.stderr, name
        assert len(refused.stderr.strip().splitlines()) == 1, name
    assert world.state(approval.id) is ApprovalState.PENDING
    unknown = world.cli("approve", "no-such-id", key=world.user("gina", "treasury"), check=False)
    assert unknown.returncode == 1 and "no approval has the id 'no-such-id'" in unknown.stderr
    nobody = world.cli("approve", approval.id, check=False, env={"GATEWAY_USER_KEY": ""})
    assert nobody.returncode == 2 and "user key" in nobody.stderr


def test_a_revoked_user_key_is_refused(world: World) -> None:
    approval = world.hold("role:treasury")
    key = world.user("frank", "treasury")
    world.revoke_keys_of("frank")
    refused = world.cli("approve", approval.id, key=key, check=False)
    assert refused.returncode == 1 and "user key revoked" in refused.stderr
    assert world.state(approval.id) is ApprovalState.PENDING


def test_an_admin_override_decides_alone_and_is_audited_as_one(world: World) -> None:
    approval = world.hold("role:treasury", quorum=3)
    both = world.cli("approve", approval.id, "--admin", "treasury unreachable", key="agu_x", check=False)
    assert both.returncode == 2
    done = world.cli("approve", approval.id, "--admin", "treasury unreachable, CFO said go", "--comment", "ok")
    assert "as the admin" in done.stdout
    assert world.state(approval.id) is ApprovalState.APPROVED
    events = world.approval_events()
    override = next(e for e in events if e["action"] == "override")
    assert override["actor"] == "admin" and override["comment"] == "treasury unreachable, CFO said go"
    assert override["details"]["override"] is True and override["state"] == "approved"
    assert events[-1]["action"] == "approved" and events[-1]["actor"] == "admin"
    denied = world.hold("role:treasury", arguments={"amount": 7})
    world.cli("deny", denied.id, "--admin", "fraud suspected", "--comment", "blocked")
    assert world.state(denied.id) is ApprovalState.DENIED


def test_cancel_by_the_calls_user_an_approver_or_the_admin(world: World) -> None:
    approval = world.hold("role:treasury")
    stranger = world.cli("cancel", approval.id, "--comment", "no", key=world.user("erin", "sales"), check=False)
    assert stranger.returncode == 1 and "cannot cancel" in stranger.stderr
    alice = world.user("alice@example.com")
    cancelled = world.cli("cancel", approval.id, "--comment", "not needed any more", key=alice)
    assert f"Cancelled approval {approval.id}" in cancelled.stdout
    assert world.state(approval.id) is ApprovalState.CANCELLED
    twice = world.cli("cancel", approval.id, "--comment", "again", "--admin", "cleanup", check=False)
    assert twice.returncode == 1 and "cancelled" in twice.stderr
    last = world.approval_events()[-1]
    assert (last["action"], last["actor"], last["comment"]) == ("cancelled", "alice@example.com", "not needed any more")
    shown = json.loads(world.cli("show", approval.id, "--json").stdout)
    assert (shown["ended_by"], shown["end_comment"]) == ("alice@example.com", "not needed any more")
    ended = next(line for line in world.cli("show", approval.id).stdout.splitlines() if "Ended:" in line)
    assert ended.split() == ["Ended:", "cancelled", "by", "alice@example.com:", "not", "needed", "any", "more"]
