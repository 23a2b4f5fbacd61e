"""The console's Agents, People and Connectors pages, in-process, and the audit figures behind them.

The whole gateway app runs (Starlette's test client drives its lifespan) on a SQLite file; people
are real users with keys and sign in through the sign-in form. Keys made in the console are
checked at the agents' own door (`ApiKeyStore.authenticate`), and every refusal is checked to
have changed nothing. The figures are checked on SQLite and PostgreSQL, since their queries lean
on each database's planner (a recursive walk of an index, reads bounded by LIMIT).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
import orjson
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from audit_calls import audit_call
from gateway.app import create_app
from gateway.audit import AuditRecorder, Redactor
from gateway.config import load_config
from gateway.console import agent_figures as figures
from gateway.errors import AuthenticationFailed
from gateway.identity.api_keys import ApiKeyStore
from gateway.identity.principal import Principal
from gateway.identity.users import UserStore
from gateway.storage import Database
from gateway.storage.tables import AuditEventRow, ConsoleSessionRow
from harness import settled_client, stdio_connector, write_gateway_config

BASE = "http://127.0.0.1"
T = TypeVar("T")


class Gateway:
    """A gateway's config and database, for the test to prepare and inspect around the running app."""

    def __init__(self, directory: Path, connectors: dict[str, str] | None = None) -> None:
        self.config = load_config(write_gateway_config(directory, connectors or {}))

    def run(self, job: Callable[[Database], Awaitable[T]]) -> T:
        async def with_database() -> T:
            database = Database(self.config.gateway.storage.url)
            await database.migrate()
            try:
                return await job(database)
            finally:
                await database.close()

        return anyio.run(with_database)

    def person(self, name: str, *roles: str) -> str:
        async def create(database: Database) -> str:
            return (await UserStore(database).create(name, roles))[1]

        return self.run(create)

    def agent_key(self, agent: str, *roles: str) -> tuple[str, str]:
        async def create(database: Database) -> tuple[str, str]:
            record, secret = await ApiKeyStore(database).create(agent, roles)
            return record.id, secret

        return self.run(create)

    def authenticate(self, secret: str) -> Principal:
        async def check(database: Database) -> Principal:
            return await ApiKeyStore(database, cache_seconds=0).authenticate(secret)

        return self.run(check)

    def key_count(self) -> int:
        async def count(database: Database) -> int:
            return len(await ApiKeyStore(database).list())

        return self.run(count)

    def console_events(self) -> list[dict[str, Any]]:
        async def read(database: Database) -> list[dict[str, Any]]:
            async with database.session() as session:
                rows = (
                    await session.scalars(select(AuditEventRow.content).where(AuditEventRow.kind == "console"))
                ).all()
            return [orjson.loads(content)["data"] for content in rows]

        return self.run(read)

    def every_event_text(self) -> str:
        async def read(database: Database) -> str:
            async with database.session() as session:
                return "\n".join((await session.scalars(select(AuditEventRow.content))).all())

        return self.run(read)

    def sessions_of(self, name: str) -> int:
        async def count(database: Database) -> int:
            async with database.session() as session:
                query = select(ConsoleSessionRow.id_hash).where(ConsoleSessionRow.user_name == name)
                return len((await session.scalars(query)).all())

        return self.run(count)

    def record_calls(self, calls: list[tuple[Principal, str, str, timedelta]]) -> None:
        """Calls as another gateway process recorded them: (who, tool, decision, how long ago)."""

        async def record(database: Database) -> None:
            async with AuditRecorder(database, Redactor(), replica_id="elsewhere") as recorder:
                for principal, tool, decision, ago in calls:
                    handle = await recorder.record_call(
                        audit_call(principal, tool), decision=decision, time=datetime.now(UTC) - ago
                    )
                    await recorder.record_outcome(handle, outcome="ok" if decision == "allow" else "denied")

        self.run(record)


class Browser:
    """One person's browser: their own cookies, on the one test client that runs the app."""

    def __init__(self, client: TestClient) -> None:
        self._client = client
        self._jar = httpx2.Cookies()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        self._client.cookies = self._jar
        try:
            return self._client.request(method, path, **kwargs)
        finally:
            self._jar = httpx2.Cookies(self._client.cookies)
            self._client.cookies = httpx2.Cookies()

    def get(self, path: str) -> httpx2.Response:
        return self.request("GET", path)

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: Any) -> httpx2.Response:
        return self.request("POST", path, data=data or {}, **kwargs)

    def sign_in(self, key: str) -> httpx2.Response:
        form = self.get("/ui/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None, form.text
        return self.post("/ui/login", {"csrf": token.group(1), "key": key, "next": "/ui/"})

    def csrf(self) -> str:
        found = re.search(r'data-csrf="([^"]+)"', self.get("/ui/").text)
        assert found is not None
        return found.group(1)


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return Gateway(tmp_path)


@pytest.fixture
def client(gateway: Gateway) -> Iterator[TestClient]:
    with settled_client(create_app(gateway.config), base_url=BASE, follow_redirects=False) as test_client:
        yield test_client


def signed_in(gateway: Gateway, client: TestClient, name: str, *roles: str) -> Browser:
    browser = Browser(client)
    assert browser.sign_in(gateway.person(name, *roles)).status_code == 303
    return browser


def secret_on(page: httpx2.Response, prefix: str) -> str:
    found = re.findall(rf"{prefix}[A-Za-z0-9_-]{{43}}", page.text)
    assert len(found) == 1, page.text
    return str(found[0])


def post_forms(page: httpx2.Response) -> list[str]:
    """Where the page's writing forms post to, the sign-out form aside."""
    actions = re.findall(r'<form[^>]*method="post"[^>]*action="([^"]+)"', page.text)
    return [action for action in actions if action != "/ui/logout"]


def test_an_admin_issues_a_key_that_is_shown_once_and_works_until_revoked(gateway: Gateway, client: TestClient) -> None:
    admin = signed_in(gateway, client, "ada", "admin")
    form = admin.get("/ui/keys/new?agent=billing-bot")
    assert form.status_code == 200 and 'value="billing-bot"' in form.text and post_forms(form) == ["/ui/keys"]

    issued = admin.post(
        "/ui/keys",
        {"csrf": admin.csrf(), "agent": "billing-bot", "roles": "finance, reader", "description": "invoices job"},
    )
    assert issued.status_code == 200 and "not shown again" in issued.text
    secret = secret_on(issued, "agw_")
    assert issued.headers["cache-control"] == "no-store"

    principal = gateway.authenticate(secret)
    assert (principal.agent, principal.roles) == ("billing-bot", ("finance", "reader"))
    key_id = principal.credential_id
    assert key_id is not None

    listing, detail = admin.get("/ui/agents"), admin.get("/ui/agents/billing-bot")
    for page in (listing, detail):
        assert page.status_code == 200 and key_id in page.text and secret not in page.text
    assert "finance, reader" in listing.text and "invoices job" in detail.text
    assert f'href="/ui/keys/{key_id}/revoke"' in detail.text

    confirm = admin.get(f"/ui/keys/{key_id}/revoke")
    assert confirm.status_code == 200 and post_forms(confirm) == [f"/ui/keys/{key_id}/revoke"]
    assert gateway.authenticate(secret).agent == "billing-bot"  # asking changed nothing
    revoked = admin.post(f"/ui/keys/{key_id}/revoke", {"csrf": admin.csrf()})
    assert revoked.status_code == 303 and revoked.headers["location"] == f"/ui/agents/billing-bot?revoked={key_id}"
    with pytest.raises(AuthenticationFailed, match="revoked"):
        gateway.authenticate(secret)
    after = admin.get(revoked.headers["location"])
    assert f"Key {key_id} is revoked" in after.text and f'href="/ui/keys/{key_id}/revoke"' not in after.text

    events = [event for event in gateway.console_events() if event["action"].startswith("key_")]
    assert [(event["action"], event["user"], event["target"]) for event in events] == [
        ("key_created", "ada", key_id),
        ("key_revoked", "ada", key_id),
    ]
    assert events[0]["details"]["roles"] == ["finance", "reader"] and events[0]["via"] == "key"
    assert secret not in gateway.every_event_text()


def test_a_bad_agent_name_is_refused_and_the_form_keeps_what_was_typed(gateway: Gateway, client: TestClient) -> None:
    admin = signed_in(gateway, client, "ada", "admin")
    refused = admin.post("/ui/keys", {"csrf": admin.csrf(), "agent": "no spaces please", "roles": "reader"})
    assert refused.status_code == 400 and "invalid agent name" in refused.text
    assert 'value="no spaces please"' in refused.text and 'value="reader"' in refused.text
    assert gateway.key_count() == 0


def test_a_viewer_reads_everything_but_is_offered_no_form_and_a_forged_post_changes_nothing(
    gateway: Gateway, client: TestClient
) -> None:
    key_id, secret = gateway.agent_key("billing-bot", "finance")
    gateway.person("carol", "approver")
    viewer = signed_in(gateway, client, "vic", "viewer")
    for path in ("/ui/agents", "/ui/agents/billing-bot", "/ui/users", "/ui/connectors"):
        page = viewer.get(path)
        assert page.status_code == 200, path
        assert post_forms(page) == [] and not re.search(r'href="[^"]*(/revoke|/disable|/keys/new)', page.text), path
    assert "carol" in viewer.get("/ui/users").text and key_id in viewer.get("/ui/agents").text

    carol_key = gateway.run(lambda database: UserStore(database).get("carol")).keys[0].id
    token = viewer.csrf()
    for method, path, data in (
        ("GET", "/ui/keys/new", {}),
        ("GET", f"/ui/keys/{key_id}/revoke", {}),
        ("GET", f"/ui/users/keys/{carol_key}/revoke", {}),
        ("GET", "/ui/users/carol/disable", {}),
        ("POST", "/ui/keys", {"agent": "sneaky-bot", "roles": "admin"}),
        ("POST", f"/ui/keys/{key_id}/revoke", {}),
        ("POST", "/ui/users", {"name": "mallory", "roles": "admin"}),
        ("POST", "/ui/users/carol/keys", {}),
        ("POST", f"/ui/users/keys/{carol_key}/revoke", {}),
        ("POST", "/ui/users/carol/disable", {}),
    ):
        refused = viewer.request(method, path, data={"csrf": token, **data} if method == "POST" else None)
        assert refused.status_code == 403 and "admin" in refused.text, (method, path)

    assert gateway.key_count() == 1 and gateway.authenticate(secret).agent == "billing-bot"
    carol = gateway.run(lambda database: UserStore(database).get("carol"))
    assert not carol.disabled and [key.revoked for key in carol.keys] == [False]
    assert [user.user.name for user in gateway.run(lambda database: UserStore(database).list())] == ["carol", "vic"]
    assert not [event for event in gateway.console_events() if event["action"] != "sign_in"]


def test_a_write_without_this_session_s_token_or_from_another_site_is_refused(
    gateway: Gateway, client: TestClient
) -> None:
    admin = signed_in(gateway, client, "ada", "admin")
    wanted = {"agent": "billing-bot", "roles": "finance"}
    for data, headers in (
        (wanted, {}),
        ({**wanted, "csrf": "not-the-token"}, {}),
        ({**wanted, "csrf": admin.csrf()}, {"Origin": "https://evil.example"}),
    ):
        refused = admin.post("/ui/keys", data, headers=headers)
        assert refused.status_code == 403 and "security token" in refused.text
    assert gateway.key_count() == 0
    assert admin.post("/ui/keys", {**wanted, "csrf": admin.csrf()}).status_code == 200
    assert gateway.key_count() == 1


def test_an_admin_manages_people_and_revoking_or_disabling_ends_their_sessions(
    gateway: Gateway, client: TestClient
) -> None:
    admin = signed_in(gateway, client, "ada", "admin")
    created = admin.post("/ui/users", {"csrf": admin.csrf(), "name": "carol", "roles": "approver treasury"})
    assert created.status_code == 200 and "not shown again" in created.text
    first_key = secret_on(created, "agu_")
    carol = Browser(client)
    assert carol.sign_in(first_key).status_code == 303
    assert carol.get("/ui/agents").status_code == 200

    people = admin.get("/ui/users")
    assert "approver, treasury" in people.text and first_key not in people.text
    added = admin.post("/ui/users/carol/keys", {"csrf": admin.csrf()})
    second_key = secret_on(added, "agu_")
    first_id, second_id = (key.id for key in gateway.run(lambda database: UserStore(database).get("carol")).keys)

    assert admin.get(f"/ui/users/keys/{first_id}/revoke").status_code == 200
    revoked = admin.post(f"/ui/users/keys/{first_id}/revoke", {"csrf": admin.csrf()})
    assert revoked.status_code == 303 and "is revoked" in admin.get(revoked.headers["location"]).text
    assert gateway.sessions_of("carol") == 0  # ended at once, not when she next comes by
    sent_away = carol.get("/ui/agents")
    assert sent_away.status_code == 303 and sent_away.headers["location"].startswith("/ui/login")
    assert carol.sign_in(first_key).status_code == 401
    assert carol.sign_in(second_key).status_code == 303

    refused = admin.post("/ui/users/ada/disable", {"csrf": admin.csrf()})
    assert refused.status_code == 409 and "cannot disable yourself" in refused.text
    assert admin.get("/ui/users/carol/disable").status_code == 200
    disabled = admin.post("/ui/users/carol/disable", {"csrf": admin.csrf()})
    assert disabled.status_code == 303 and "carol is disabled" in admin.get(disabled.headers["location"]).text
    assert gateway.sessions_of("carol") == 0
    sent_away = carol.get("/ui/agents")
    assert sent_away.status_code == 303 and sent_away.headers["location"] == "/ui/login?next=%2Fui%2Fagents"
    assert carol.sign_in(second_key).status_code == 401
    assert admin.get("/ui/agents").status_code == 200  # the admin's own session is untouched

    events = [event for event in gateway.console_events() if event["action"] not in ("sign_in", "sign_out")]
    assert [(event["action"], event["user"], event["target"]) for event in events] == [
        ("user_created", "ada", "carol"),
        ("user_key_created", "ada", second_id),
        ("user_key_revoked", "ada", first_id),
        ("user_disabled", "ada", "carol"),
    ]
    assert events[2]["details"]["sessions_ended"] == 1 and events[3]["details"]["sessions_ended"] == 1
    text = gateway.every_event_text()
    assert first_key not in text and second_key not in text


def test_the_agents_page_knows_agents_by_key_and_by_the_audit_log(gateway: Gateway) -> None:
    gateway.agent_key("billing-bot", "finance")
    token_agent = Principal(agent="oidc-bot", roles=("reader",), user="dana", auth_method="jwt")
    gateway.record_calls(
        [
            (token_agent, "crm__search", "allow", timedelta(minutes=30)),
            (token_agent, "crm__delete", "deny", timedelta(minutes=20)),
            (token_agent, "crm__search", "allow", timedelta(minutes=5)),
            (token_agent, "crm__export", "allow", timedelta(hours=5)),
        ]
    )
    with settled_client(create_app(gateway.config), base_url=BASE, follow_redirects=False) as client:
        viewer = signed_in(gateway, client, "vic", "viewer")
        listing = viewer.get("/ui/agents")
        detail = viewer.get("/ui/agents/oidc-bot")
        unknown = viewer.get("/ui/agents/nobody")

    rows = {
        name: row
        for name, row in re.findall(
            r'<th scope="row"><a href="/ui/agents/([^"]+)">[^<]+</a></th>(.*?)</tr>', listing.text, re.S
        )
    }
    assert list(rows) == ["oidc-bot", "billing-bot"]  # seen lately first
    figures_of = [
        re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", rows["oidc-bot"], re.S)
    ]
    assert figures_of[1:3] == ["3", "1"]  # calls and denials in the last hour
    assert "reader" in figures_of[3] and "jwt" in figures_of[3] and "no key" in figures_of[4]
    assert "no call recorded lately" in rows["billing-bot"] and "finance" in rows["billing-bot"]
    assert "Open MCP sessions on this gateway process: <strong>0</strong>" in listing.text

    assert detail.status_code == 200
    assert [tool for tool in re.findall(r"<td>(crm__\w+)</td>", detail.text)] == [
        "crm__search",
        "crm__delete",
        "crm__search",
        "crm__export",
    ]
    assert 'href="/ui/activity?agent=oidc-bot"' in detail.text
    assert "4 call(s), 1 denied" in detail.text and "dana" in detail.text
    assert unknown.status_code == 404


def test_the_connectors_page_shows_a_backend_s_tools_with_their_annotations_and_labels(tmp_path: Path) -> None:
    sink = stdio_connector(extra='labels = ["internal"]\n\n[tools.echo]\nlabels = ["safe"]')
    gateway = Gateway(tmp_path, {"sink": sink})
    with settled_client(create_app(gateway.config), base_url=BASE, follow_redirects=False) as client:
        page = signed_in(gateway, client, "vic", "viewer").get("/ui/connectors")
    assert page.status_code == 200
    sections = dict(re.findall(r'<section class="connector" id="([^"]+)"(.*?)</section>', page.text, re.S))
    assert list(sections) == ["sink", "gateway"]
    assert '<span class="state healthy">healthy</span>' in sections["sink"]
    assert re.search(r"Protocol version</dt><dd>\d{4}-\d{2}-\d{2}</dd>", sections["sink"])
    assert "Listing stored</dt><dd>20" in sections["sink"]

    tools = dict(re.findall(r'<th scope="row"><code>([^<]+)</code>.*?</th>(.*?)</tr>', sections["sink"], re.S))
    assert "sink__echo" in tools and "sink__add" in tools
    echo = re.sub(r"\s+", " ", tools["sink__echo"])
    assert '<li class="hint yes">read-only</li>' in echo and '<li class="hint yes">idempotent</li>' in echo
    assert '<li class="hint unset">(destructive)</li>' in echo and '<span class="tag">safe</span>' in echo
    assert '<span class="tag">internal</span>' in echo
    add = re.sub(r"\s+", " ", tools["sink__add"])
    assert '<li class="hint unset">(not read-only)</li>' in add and "safe" not in add and "internal" in add

    assert "built in" in sections["gateway"] and "gateway__approval_status" in sections["gateway"]


# -- the figures, on both databases ----------------------------------------------------------


@pytest.mark.anyio
async def test_figures_find_agents_their_latest_calls_and_hours_through_bounded_reads(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    bots = {name: Principal(agent=name, roles=("r",)) for name in ("alpha", "beta", "gamma")}
    async with AuditRecorder(database, Redactor(), replica_id="figures") as recorder:
        for name, tool, decision, ago in (
            ("alpha", "t__old", "allow", timedelta(hours=30)),
            ("alpha", "t__one", "allow", timedelta(hours=3, minutes=10)),
            ("alpha", "t__two", "deny", timedelta(minutes=50)),
            ("beta", "t__three", "allow", timedelta(minutes=10)),
            ("gamma", "t__four", "hold", timedelta(minutes=2)),
        ):
            handle = await recorder.record_call(audit_call(bots[name], tool), decision=decision, time=now - ago)
            await recorder.record_outcome(handle, outcome="ok" if decision == "allow" else "denied")
        # Newer than gamma's call: approval events naming it, more than the first read looks at.
        for n in range(12):
            await recorder.record_approval_event(
                f"ap-{n}",
                "voted",
                state="pending",
                previous_state="pending",
                actor="bob",
                agent="gamma",
                user=None,
                tool="t__four",
            )

    assert await figures.agents_in_log(database) == (["alpha", "beta", "gamma"], False)
    assert await figures.agents_in_log(database, limit=2) == (["alpha", "beta"], True)
    assert await figures.named_in_log(database, "gamma") and not await figures.named_in_log(database, "delta")

    alpha = await figures.recent_calls(database, "alpha")
    assert [(call.tool, call.decision, call.outcome) for call in alpha] == [
        ("t__two", "deny", "denied"),
        ("t__one", "allow", "ok"),
        ("t__old", "allow", "ok"),
    ]
    assert alpha[0].roles == ("r",) and alpha[0].auth_method == "api_key"
    gamma = await figures.last_call(database, "gamma")
    assert gamma is not None and gamma.tool == "t__four"  # found past the approval events
    assert await figures.last_call(database, "delta") is None

    hour = await figures.last_hour_by_agent(database, now=now)
    assert hour.counts == {
        "alpha": figures.HourCounts(1, 1),
        "beta": figures.HourCounts(1, 0),
        "gamma": figures.HourCounts(1, 0),
    }
    assert not hour.partial
    day = await figures.last_day(database, "alpha", now=now)
    assert (day.calls, day.denials, day.partial) == (2, 1, False)  # the call of 30 hours ago is outside
    assert day.calls_per_hour[-1] == 1 and day.denials_per_hour[-1] == 1 and day.calls_per_hour[-4] == 1

    monkeypatch.setattr(figures, "MAX_HOUR_CALLS", 2)
    capped = await figures.last_hour_by_agent(database, now=now)
    assert capped.partial and sum(counts.calls for counts in capped.counts.values()) == 2
    assert set(capped.counts) == {"gamma", "beta"}  # the newest calls are the ones read
    monkeypatch.setattr(figures, "MAX_DAY_EVENTS", 1)
    assert (await figures.last_day(database, "alpha", now=now)).partial
