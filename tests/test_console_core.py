"""The console's doors, in-process: sign-in, sessions, permissions, CSRF and the browser-facing headers.

The whole gateway app runs (Starlette's test client drives its lifespan), on a SQLite file;
people are real users with keys, and a held call is a real approval in the same database.
What a browser does is covered again in a real browser by `test_console_browser.py`.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.approvals import ApprovalStore, Requirement, Sealer
from gateway.calls import Call, Origin, Target
from gateway.config import load_config
from gateway.console.sessions import ConsoleSessions
from gateway.identity.api_keys import ApiKeyStore
from gateway.identity.principal import Principal
from gateway.identity.users import User, UserStore
from gateway.settings.console import ConsoleSettings
from gateway.storage import Database
from harness import run_cli, settled_client, write_gateway_config

KEY = base64.b64encode(os.urandom(32)).decode()
BASE = "http://127.0.0.1"


class Console:
    """The gateway app and its database, with people to sign in as."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.config_path = write_gateway_config(
            directory,
            {},
            extra=f'\n[approvals]\nsealing_keys = [{{ id = "k1", key = "{KEY}" }}]\n\n[console]\nidle_timeout = 600\n',
        )
        self.config = load_config(self.config_path)
        self.keys: dict[str, str] = {}

    def run(self, coroutine_function: object, *args: object) -> object:
        async def job() -> object:
            database = Database(self.config.gateway.storage.url)
            await database.migrate()
            try:
                return await coroutine_function(database, *args)  # type: ignore[operator]
            finally:
                await database.close()

        return anyio.run(job)

    def person(self, name: str, *roles: str) -> str:
        async def create(database: Database) -> str:
            _, key = await UserStore(database).create(name, roles)
            return key

        self.keys[name] = str(self.run(create))
        return self.keys[name]

    def hold(self, tool: str = "finance__pay_invoice", agent: str = "finance-bot") -> str:
        async def create(database: Database) -> str:
            call = Call(
                "tools/call",
                Origin(Principal(agent=agent, roles=("finance",)), session_id="s1"),
                tool,
                {"invoice_id": "INV-2001", "amount": 12500.0},
                target=Target("finance", tool.split("__")[-1]),
            )
            approval = await ApprovalStore(database, Sealer([("k1", KEY)])).create(
                call,
                Requirement(approvers=("role:finance-managers",), quorum=1, expires_in=timedelta(hours=1)),
                policy_ids=("large-payments",),
                reasons=("Payments over 1,000 wait for a finance manager.",),
                redacted_arguments={"invoice_id": "INV-2001", "amount": 12500.0},
                policy_version=None,
            )
            return approval.id

        return str(self.run(create))

    def state_of(self, approval_id: str) -> str:
        async def read(database: Database) -> str:
            return (await ApprovalStore(database, Sealer([("k1", KEY)])).get(approval_id)).state.value

        return str(self.run(read))


@pytest.fixture
def console(tmp_path: Path) -> Console:
    return Console(tmp_path)


@pytest.fixture
def client(console: Console) -> Iterator[TestClient]:
    with settled_client(create_app(console.config), base_url=BASE, follow_redirects=False) as test_client:
        yield test_client


def sign_in(client: TestClient, key: str, *, next_path: str = "/ui/") -> object:
    form = client.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None, form.text
    return client.post("/ui/login", data={"csrf": token.group(1), "key": key, "next": next_path})


def csrf_of(page_html: str) -> str:
    found = re.search(r'data-csrf="([^"]+)"', page_html)
    assert found is not None
    return found.group(1)


def test_a_visitor_without_a_session_is_sent_to_sign_in_and_a_script_hears_401(client: TestClient) -> None:
    page = client.get("/ui/approvals?id=x")
    assert page.status_code == 303 and page.headers["location"] == "/ui/login?next=%2Fui%2Fapprovals%3Fid%3Dx"
    fragment = client.get("/ui/approvals", headers={"X-Requested-With": "console"})
    assert fragment.status_code == 401 and "sign in again" in fragment.text


def test_every_console_response_carries_the_strict_headers(client: TestClient) -> None:
    for path in ("/ui/login", "/ui/static/console.css", "/ui/"):
        response = client.get(path)
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", client.get("/ui/login").text, re.S)
    assert scripts and all('src="/ui/static/' in attributes and not body.strip() for attributes, body in scripts)


def test_a_person_signs_in_with_their_key_and_the_cookie_is_locked_down(console: Console, client: TestClient) -> None:
    key = console.person("maria", "finance-managers", "approver")
    signed = sign_in(client, key, next_path="/ui/approvals")
    assert signed.status_code == 303 and signed.headers["location"] == "/ui/approvals"  # type: ignore[attr-defined]
    cookie = next(v for k, v in signed.headers.multi_items() if k == "set-cookie" and "gateway_console=" in v)  # type: ignore[attr-defined]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain HTTP on the loopback interface: a developer's machine
    page = client.get("/ui/approvals")
    assert page.status_code == 200 and "maria" in page.text and "Nothing is waiting for approval" in page.text


def test_cookies_are_secure_over_https_and_away_from_the_loopback_interface(console: Console) -> None:
    key = console.person("maria", "viewer")
    with settled_client(
        create_app(console.config), base_url="https://gateway.example", follow_redirects=False
    ) as remote:
        signed = sign_in(remote, key)
    cookie = next(v for k, v in signed.headers.multi_items() if k == "set-cookie" and "gateway_console=" in v)  # type: ignore[attr-defined]
    assert "Secure" in cookie
    with settled_client(create_app(console.config), base_url="http://gateway.example", follow_redirects=False) as plain:
        form = plain.get("/ui/login")
    # Plain HTTP on a network address: the browser will not send the cookie back, so sign-in needs HTTPS.
    assert "Secure" in form.headers["set-cookie"]


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("wrong", "Not signed in: unknown user key."),
        ("agent", "that is an agent&#39;s API key"),
        ("no-role", "may not use the console: their roles (finance-managers) include none of viewer, approver, admin."),
    ],
)
def test_refused_sign_ins_say_why(console: Console, client: TestClient, who: str, expected: str) -> None:
    if who == "wrong":
        key = "agu_" + "x" * 43
    elif who == "agent":

        async def agent_key(database: Database) -> str:
            return (await ApiKeyStore(database).create("finance-bot", ("finance",)))[1]

        key = str(console.run(agent_key))
    else:
        key = console.person("erin", "finance-managers")
    refused = sign_in(client, key)
    assert refused.status_code in (401, 403)  # type: ignore[attr-defined]
    assert expected in refused.text  # type: ignore[attr-defined]
    assert client.get("/ui/").status_code == 303  # still signed out


def test_the_sign_in_form_needs_its_own_token_and_never_redirects_off_site(
    console: Console, client: TestClient
) -> None:
    key = console.person("maria", "viewer")
    forged = client.post("/ui/login", data={"key": key, "next": "/ui/"})
    assert forged.status_code == 403 and "expired or came from another site" in forged.text
    off_site = sign_in(client, key, next_path="//evil.example/ui")
    assert off_site.headers["location"] == "/ui/"  # type: ignore[attr-defined]


def test_an_approver_decides_a_held_call_and_the_decision_is_audited(console: Console, client: TestClient) -> None:
    approval_id = console.hold()
    sign_in(client, console.person("maria", "finance-managers", "approver"))
    inbox = client.get("/ui/approvals")
    assert "finance__pay_invoice" in inbox.text and "12500.0" in inbox.text and 'value="approve"' in inbox.text
    decided = client.post(
        f"/ui/approvals/{approval_id}/decide",
        data={"csrf": csrf_of(inbox.text), "decision": "approve", "comment": "invoice checked"},
    )
    assert decided.status_code == 303 and decided.headers["location"].endswith("?decided=approve")
    assert console.state_of(approval_id) == "approved"
    found = run_cli("audit", "search", "--kind", "console", "--json", "--config", str(console.config_path))
    actions = [json.loads(line)["action"] for line in found.stdout.splitlines()]
    assert "decide" in actions and "sign_in" in actions


def test_writes_without_the_token_from_another_site_or_without_the_permission_are_refused(
    console: Console, client: TestClient
) -> None:
    approval_id = console.hold()
    sign_in(client, console.person("victor", "viewer", "finance-managers"))
    page = client.get(f"/ui/approvals/{approval_id}")
    assert 'value="approve"' not in page.text and "your console role does not include approving" in page.text
    as_viewer = client.post(
        f"/ui/approvals/{approval_id}/decide", data={"csrf": csrf_of(page.text), "decision": "approve"}
    )
    assert as_viewer.status_code == 403 and "approver" in as_viewer.text
    client.cookies.clear()
    sign_in(client, console.person("maria", "finance-managers", "approver"))
    token = csrf_of(client.get("/ui/approvals").text)
    no_token = client.post(f"/ui/approvals/{approval_id}/decide", data={"decision": "approve"})
    other_site = client.post(
        f"/ui/approvals/{approval_id}/decide",
        data={"csrf": token, "decision": "approve"},
        headers={"Origin": "http://evil.example"},
    )
    for refused in (no_token, other_site):
        assert refused.status_code == 403 and "security token" in refused.text
    assert console.state_of(approval_id) == "pending"


def test_a_denial_needs_a_comment_and_the_store_keeps_people_from_their_own_calls(
    console: Console, client: TestClient
) -> None:
    approval_id = console.hold()
    sign_in(client, console.person("maria", "finance-managers", "approver"))
    token = csrf_of(client.get("/ui/approvals").text)
    bare = client.post(f"/ui/approvals/{approval_id}/decide", data={"csrf": token, "decision": "deny"})
    assert bare.status_code == 409 and "Say why you deny it" in bare.text
    assert console.state_of(approval_id) == "pending"


def test_signing_out_or_being_disabled_ends_the_session(console: Console, client: TestClient) -> None:
    sign_in(client, console.person("maria", "viewer"))
    page = client.get("/ui/")
    cookie = client.cookies.get("gateway_console")
    out = client.post("/ui/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    client.cookies.set("gateway_console", cookie or "", path="/ui")
    assert client.get("/ui/").status_code == 303  # the old cookie opens nothing any more

    sign_in(client, console.person("dora", "viewer"))
    assert client.get("/ui/").status_code == 200
    run_cli("users", "disable", "dora", "--config", str(console.config_path))
    assert client.get("/ui/").status_code == 303


@pytest.mark.anyio
async def test_sessions_end_after_their_idle_or_absolute_time(database: Database) -> None:
    now = [datetime(2026, 12, 5, 9, 0, tzinfo=UTC)]
    sessions = ConsoleSessions(database, ConsoleSettings(idle_timeout=600, absolute_timeout=3600), clock=lambda: now[0])
    person = User("usr_1", "maria", ("viewer",))
    idle_secret, _ = await sessions.open(person, via="key")
    busy_secret, _ = await sessions.open(person, via="key")
    now[0] += timedelta(minutes=9)
    assert await sessions.find(busy_secret) is not None
    now[0] += timedelta(minutes=2)  # 11 minutes since the idle one was last used
    assert await sessions.find(idle_secret) is None
    for _ in range(6):  # used every 9 minutes: never idle, but the absolute hour still ends it
        assert await sessions.find(busy_secret) is not None
        now[0] += timedelta(minutes=9)
    assert await sessions.find(busy_secret) is None
    assert await sessions.find("not-a-session") is None


def test_the_history_narrows_by_state_agent_and_tool(console: Console, client: TestClient) -> None:
    paid = console.hold()
    refunded = console.hold("finance__refund")
    other = console.hold(agent="other-bot")
    sign_in(client, console.person("victor", "viewer"))

    def listed(query: str) -> set[str]:
        page = client.get(f"/ui/approvals/history?{query}")
        assert page.status_code == 200
        return set(re.findall(r'href="/ui/approvals/([0-9a-f-]{36})"', page.text))

    assert listed("") == {paid, refunded, other}
    assert listed("tool=finance__refund") == {refunded}
    assert listed("agent=other-bot&state=pending") == {other}
    assert listed("state=approved") == set()
    refused = client.get("/ui/approvals/history?state=lost")
    assert "Cannot list those approvals" in refused.text


def test_an_unknown_address_or_a_refused_body_gets_a_console_page_not_plain_text(client: TestClient) -> None:
    missing = client.get("/ui/no-such-section")
    assert missing.status_code == 404 and "There is no such page in the console." in missing.text
    oversized = client.post(
        "/ui/login",
        content=b"key=" + b"a" * (2 * 1024 * 1024),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert oversized.status_code == 400 and "The request was refused: Field exceeded maximum size" in oversized.text
    malformed = client.post("/ui/login", content=b"key=x", headers={"content-type": "multipart/form-data; boundary=z"})
    assert malformed.status_code == 400 and "The request was refused" in malformed.text
    for page in (missing, oversized, malformed):
        assert "script-src 'self'" in page.headers["content-security-policy"]
