"""The web console in real headless Chromium, against a real gateway, as its people use it.

One gateway (the quick start's finance server behind it, payments over 1,000 held for a finance
manager) serves every test of the module but the idle timeout's, which needs a short
`[console] idle_timeout` of its own. `maria` is a finance manager with the console role
`approver`, `victor` has `viewer` only, and `ada`, a finance manager and `admin`, may see and do
everything, so the accessibility sweep sees every page as it is, not its "Not allowed". The
agent is the official `mcp` client; a call that waits for people runs on a thread of its own
(`in_background`) while the test drives the browser. Tests wait on what a person would see
(Playwright's `expect`) or on the gateway's own state, never on sleeps.

Each held call pays an invoice no other test pays: identical calls would share one approval.
`SAVE_SCREENSHOTS=1` makes `test_screenshots_of_the_console` write the README's pictures into
docs/; otherwise it writes them into its temporary folder.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp.types import CallToolResult
from playwright.sync_api import Locator, Page, expect

from browser import assert_accessible, in_background, save_screenshot, screenshots_wanted, sign_in
from harness import mcp_client, wait_until
from oidc_provider import OidcProvider
from test_approvals_e2e import CALL_DEADLINE, NO_WAIT, PAY, World, approval_id_in, held_world, text_of

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Pages the accessibility sweep visits, signed in as ada (every console permission) with a held
#: call waiting; add yours. `{approval}` stands for that held call's approval id.
ACCESSIBILITY_SWEEP = [
    "/ui/",
    "/ui/approvals",
    "/ui/approvals/{approval}",
    "/ui/approvals/history",
    "/ui/approvals/no-such-approval",
    "/ui/activity",
    "{call}",
    "/ui/workflows",
    "{workflow}",
    "/ui/audit",
    "/ui/agents",
    "/ui/agents/finance-bot",
    "/ui/keys/new",
    "/ui/suspensions/new",
    "/ui/users",
    "/ui/connectors",
    "/ui/policies",
    "/ui/policies/explain",
    "/ui/policies/tests",
]
#: Pages the sweep visits signed out.
SIGNED_OUT_SWEEP = ["/ui/login"]

#: Open invoices of the finance server, each paid by one test: the backend runs these calls.
BY_BUTTON = {"invoice_id": "INV-2001", "amount": 12500.0}
BY_KEY = {"invoice_id": "INV-2002", "amount": 3400.0}
WITHOUT_SCRIPTS = {"invoice_id": "INV-2003", "amount": 48000.0}
#: Invoice numbers for calls that are held and never run (denied, left pending, or only looked at).
_UNRUN = itertools.count(1)

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
#: `[console] idle_timeout` of the gateway in the idle test, in seconds.
IDLE = 2.0


def never_run() -> dict[str, Any]:
    """A payment over 1,000 of an invoice no other call pays: held, and in these tests never run."""
    number = next(_UNRUN)
    return {"invoice_id": f"INV-{3000 + number}", "amount": 1200.0 + 150 * number}


@dataclass
class Console:
    """The shared gateway and its people: `maria` decides payments, `victor` only reads, `ada` administers."""

    world: World
    keys: dict[str, str]

    @property
    def base_url(self) -> str:
        return self.world.gateway.base_url

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def pays(self, arguments: dict[str, Any]) -> Future[CallToolResult]:
        """The agent pays and waits for people's decision (on a thread of its own)."""
        return in_background(lambda: self._call(arguments, wait=True))

    def holds(self, arguments: dict[str, Any]) -> str:
        """The agent pays without waiting; the id of the approval its call is held for."""
        return approval_id_in(self.collects(arguments))

    def collects(self, arguments: dict[str, Any]) -> CallToolResult:
        """The agent repeats a call without waiting: a new call is held, an approved one runs."""
        return in_background(lambda: self._call(arguments, wait=False)).result(CALL_DEADLINE)

    async def _call(self, arguments: dict[str, Any], *, wait: bool) -> CallToolResult:
        async with mcp_client(self.world.gateway.url, self.world.agent_key) as client:
            with anyio.fail_after(CALL_DEADLINE):
                if wait:
                    return await client.call_tool(PAY, arguments)
                return await client.call_tool(PAY, arguments, meta=NO_WAIT)

    def _api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method,
            self.url(f"/api/v1/approvals{path}"),
            headers={"Authorization": f"Bearer {self.keys['maria']}"},
            timeout=CALL_DEADLINE,
            **kwargs,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def approval(self, approval_id: str) -> dict[str, Any]:
        """The approval as the approvals API shows it, read apart from the browser."""
        return dict(self._api("GET", f"/{approval_id}"))

    def withdraw_pending(self) -> None:
        for approval in self._api("GET", "?state=pending&limit=200")["approvals"]:
            self._api("POST", f"/{approval['id']}/cancel", json={"comment": "cleared before the next test"})


def create_users(world: World, roles: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """People with console roles, made with `gateway users create`; their keys by name."""

    def created(name: str) -> str:
        role_args = [arg for role in roles[name] for arg in ("--role", role)]
        done = world.gateway.cli("users", "create", name, *role_args, "--json")
        return str(json.loads(done.stdout)["key"])

    with ThreadPoolExecutor() as pool:
        return dict(zip(roles, pool.map(created, roles)))


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with held_world(tmp_path_factory.mktemp("console"), approvers=()) as world:
        people = {
            "maria": ("finance-managers", "approver"),
            "victor": ("viewer",),
            "ada": ("finance-managers", "admin"),
        }
        keys = create_users(world, people)
        world.approvers.update(keys)
        yield Console(world, keys)


@pytest.fixture
def empty_inbox(console: Console) -> Console:
    """The shared gateway with nothing waiting for approval, for a test that watches the inbox fill."""
    console.withdraw_pending()
    return console


def assert_paid(result: CallToolResult, invoice_id: str) -> None:
    """The finance server's confirmation reached the agent: the invoice is paid."""
    assert not result.is_error, text_of(result)
    confirmation = json.loads(text_of(result))
    assert confirmation["invoice_id"] == invoice_id and confirmation["invoice_status"] == "paid", confirmation
    assert str(confirmation["payment_id"]).startswith("PAY-"), confirmation


def heading_of_the_call(page: Page) -> Locator:
    """The held call's heading: its tool and its state, as the detail panel and the approval page show it."""
    return page.get_by_role("heading", name=re.compile(PAY))


def approval_id_from(page: Page) -> str:
    found = re.search(r"/ui/approvals/([^/?]+)", page.url)
    assert found is not None, page.url
    return found.group(1)


def no_horizontal_overflow(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_a_person_signs_in_with_their_user_key_and_other_keys_are_refused(console: Console, page: Page) -> None:
    page.goto(console.url("/ui/approvals"))
    expect(page).to_have_url(console.url("/ui/login?next=%2Fui%2Fapprovals"))  # asked to sign in first
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    key = console.keys["maria"]
    mistyped = key[:-1] + ("B" if key[-1] != "B" else "C")
    page.fill("#key", mistyped)
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_have_text("Not signed in: unknown user key.")
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)

    page.fill("#key", console.world.agent_key)  # an agent's key is no person's
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("Not signed in: that is an agent's API key")

    page.fill("#key", key)
    page.click("button[type=submit]")
    expect(page).to_have_url(console.url("/ui/approvals"))  # on to the page asked for
    expect(page.get_by_role("heading", name="Approvals", exact=True)).to_be_visible()
    expect(page.get_by_role("banner")).to_contain_text("maria (approver, viewer)")


def test_signing_out_ends_the_session_and_its_pages(console: Console, page: Page) -> None:
    sign_in(page, console.base_url, console.keys["maria"])
    page.goto(console.url("/ui/approvals/history"))
    expect(page.get_by_role("heading", name="Approvals history")).to_be_visible()
    kept = page.context.cookies()  # what someone who copied the cookie would hold

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(console.url("/ui/login"))

    page.go_back()  # the page seen before signing out is not shown again
    expect(page).to_have_url(console.url("/ui/login?next=%2Fui%2Fapprovals%2Fhistory"))
    page.goto(console.url("/ui/"))
    expect(page).to_have_url(console.url("/ui/login?next=%2Fui%2F"))

    page.context.add_cookies(kept)  # the session ended on the server, not just in this browser
    page.goto(console.url("/ui/approvals"))
    expect(page).to_have_url(console.url("/ui/login?next=%2Fui%2Fapprovals"))


def watching_the_inbox(console: Console, page: Page) -> None:
    """maria on the empty inbox, its live updates connected; marks the page to tell a reload."""
    sign_in(page, console.base_url, console.keys["maria"])
    page.goto(console.url("/ui/approvals"))
    expect(page.get_by_text("Nothing is waiting for approval.")).to_be_visible()
    expect(page.locator("#live-status")).to_have_text("live")
    page.evaluate("window.sameInbox = true")


def the_call_appears(page: Page, invoice_id: str, answer: Future[CallToolResult]) -> None:
    queue = page.get_by_role("list", name="Waiting for approval")
    expect(queue.get_by_role("listitem")).to_have_count(1)
    expect(queue).to_contain_text(f"{PAY} finance-bot")
    expect(page.locator(".detail")).to_contain_text(f'"invoice_id": "{invoice_id}"')
    assert page.evaluate("window.sameInbox === true"), "the inbox was reloaded, not updated in place"
    assert not answer.done(), "the agent's call did not wait for the decision"


def the_call_ran(console: Console, page: Page, invoice_id: str, answer: Future[CallToolResult]) -> None:
    expect(page.get_by_text("Your decision (approve) is recorded.")).to_be_visible()
    assert_paid(answer.result(CALL_DEADLINE), invoice_id)
    page.reload()
    expect(heading_of_the_call(page)).to_contain_text("succeeded")
    expect(page.locator(".votes")).to_contain_text("maria approved at")
    assert console.approval(approval_id_from(page))["state"] == "succeeded"


def test_a_held_payment_appears_live_and_the_approve_button_runs_the_agents_call(
    empty_inbox: Console, page: Page
) -> None:
    watching_the_inbox(empty_inbox, page)
    answer = empty_inbox.pays(BY_BUTTON)
    the_call_appears(page, BY_BUTTON["invoice_id"], answer)

    page.get_by_role("button", name="Approve").click()
    the_call_ran(empty_inbox, page, BY_BUTTON["invoice_id"], answer)


def test_the_a_key_approves_the_call_selected_in_the_inbox(empty_inbox: Console, page: Page) -> None:
    watching_the_inbox(empty_inbox, page)
    answer = empty_inbox.pays(BY_KEY)
    the_call_appears(page, BY_KEY["invoice_id"], answer)

    page.keyboard.press("a")
    the_call_ran(empty_inbox, page, BY_KEY["invoice_id"], answer)


def test_denying_needs_a_comment_and_the_waiting_agent_hears_it(empty_inbox: Console, page: Page) -> None:
    watching_the_inbox(empty_inbox, page)
    arguments = never_run()
    answer = empty_inbox.pays(arguments)
    the_call_appears(page, arguments["invoice_id"], answer)
    comment = page.get_by_label("Comment")
    expect(page.locator("label[for^=comment-]")).to_contain_text("required to deny")

    page.keyboard.press("d")  # with no comment, the shortcut asks for one instead of denying
    expect(comment).to_be_focused()
    page.get_by_role("button", name="Deny").click()  # and so does the server, without the script's help
    expect(page.get_by_role("alert")).to_contain_text("Not decided: Say why you deny it")
    expect(heading_of_the_call(page)).to_contain_text("pending")
    assert not answer.done()

    page.get_by_label("Comment").fill("The vendor's bank details changed last week: call them first.")
    page.get_by_role("button", name="Deny").click()
    expect(page.get_by_text("Your decision (deny) is recorded.")).to_be_visible()
    expect(heading_of_the_call(page)).to_contain_text("denied")
    heard = answer.result(CALL_DEADLINE)
    assert heard.is_error
    assert "denied by maria at" in text_of(heard)
    assert "The vendor's bank details changed last week: call them first." in text_of(heard)


FORGED_DECISION = """async ([url, fields]) => {
    const response = await fetch(url, {method: "POST", body: new URLSearchParams(fields)});
    return [response.status, await response.text()];
}"""


def test_a_viewer_sees_a_held_call_but_can_neither_see_nor_use_the_decision(console: Console, page: Page) -> None:
    arguments = never_run()
    approval_id = console.holds(arguments)
    sign_in(page, console.base_url, console.keys["victor"])
    for path in (f"/ui/approvals?id={approval_id}", f"/ui/approvals/{approval_id}"):
        page.goto(console.url(path))
        expect(heading_of_the_call(page)).to_contain_text("pending")
        expect(page.get_by_text(f'"invoice_id": "{arguments["invoice_id"]}"')).to_be_visible()
        expect(page.get_by_text("your console role does not include approving")).to_be_visible()
        expect(page.get_by_role("button", name="Approve")).to_have_count(0)
        expect(page.get_by_role("button", name="Deny")).to_have_count(0)

    # The page's own script, with victor's session and his valid CSRF token, posts a decision.
    token = page.evaluate("document.body.dataset.csrf")
    status, body = page.evaluate(
        FORGED_DECISION, [f"/ui/approvals/{approval_id}/decide", {"csrf": token, "decision": "approve"}]
    )
    assert status == 403, body
    assert "This needs the console permission <strong>approver</strong>" in body
    assert console.approval(approval_id)["state"] == "pending"


async def suspect_answer(console: Console, key: str) -> str | None:
    """What the agent behind `key` hears when it lists its tools: None when served, else the refusal."""
    from mcp.shared.exceptions import MCPError

    async with mcp_client(console.world.gateway.url, key) as client:
        try:
            await client.list_tools()
        except MCPError as exc:
            return exc.error.message
    return None


def test_an_admin_suspends_an_agent_from_its_page_with_a_reason_and_resumes_it_and_a_viewer_cannot(
    console: Console, new_page: Callable[..., Page]
) -> None:
    key = console.world.gateway.create_key("suspect-bot")
    assert in_background(lambda: suspect_answer(console, key)).result(CALL_DEADLINE) is None

    viewer = new_page()
    sign_in(viewer, console.base_url, console.keys["victor"])
    viewer.goto(console.url("/ui/agents/suspect-bot"))
    expect(viewer.get_by_text("suspect-bot is served as its policies allow.")).to_be_visible()
    expect(viewer.get_by_role("button", name="Suspend suspect-bot")).to_have_count(0)
    token = viewer.evaluate("document.body.dataset.csrf")
    status, body = viewer.evaluate(
        FORGED_DECISION, ["/ui/suspensions", {"csrf": token, "agent": "suspect-bot", "reason": "forged"}]
    )
    assert status == 403 and "This needs the console permission <strong>admin</strong>" in body, body
    assert in_background(lambda: suspect_answer(console, key)).result(CALL_DEADLINE) is None

    admin = new_page()
    sign_in(admin, console.base_url, console.keys["ada"])
    admin.goto(console.url("/ui/agents/suspect-bot"))
    admin.get_by_role("button", name="Suspend suspect-bot").click()  # the reason is required: nothing is sent
    expect(admin).to_have_url(console.url("/ui/agents/suspect-bot"))
    admin.get_by_label("Reason").fill("exfiltrating customer records")
    admin.get_by_role("button", name="Suspend suspect-bot").click()
    expect(admin).to_have_url(console.url("/ui/agents/suspect-bot?suspended=1"))
    expect(admin.get_by_role("alert")).to_contain_text("suspended by ada at ")
    expect(admin.get_by_role("alert")).to_contain_text(": exfiltrating customer records. Every request of suspect-bot")
    said = in_background(lambda: suspect_answer(console, key)).result(CALL_DEADLINE)
    assert said is not None and said.startswith("denied: agent 'suspect-bot' is suspended by ada at "), said
    assert ": exfiltrating customer records. Every request of this agent is refused" in said
    admin.goto(console.url("/ui/agents"))
    suspended = admin.get_by_role("region", name="Suspended agents")
    expect(suspended.get_by_role("row", name=re.compile("suspect-bot"))).to_contain_text(
        "exfiltrating customer records"
    )

    viewer.reload()
    expect(viewer.get_by_role("status")).to_contain_text("suspended by ada at ")
    expect(viewer.get_by_role("button", name="Resume suspect-bot")).to_have_count(0)

    admin.goto(console.url("/ui/agents/suspect-bot"))
    admin.get_by_role("button", name="Resume suspect-bot").click()
    expect(admin.get_by_role("status")).to_have_text("suspect-bot is resumed: its requests are served again.")
    assert in_background(lambda: suspect_answer(console, key)).result(CALL_DEADLINE) is None
    events = console.world.gateway.cli("audit", "search", "--kind", "console", "--json").stdout.splitlines()
    actions = [(e["action"], e["user"], e["target"]) for e in map(json.loads, events)]
    assert ("agent_suspended", "ada", "suspect-bot") in actions and ("agent_resumed", "ada", "suspect-bot") in actions


EVIL_PAGE = """<!doctype html><html lang="en"><title>Win a prize</title>
<form method="post" action="{action}"><input type="hidden" name="decision" value="approve">
<button type="submit">Claim your prize</button></form></html>"""


def test_decisions_without_the_csrf_token_or_from_another_site_are_refused(console: Console, page: Page) -> None:
    approval_id = console.holds(never_run())
    sign_in(page, console.base_url, console.keys["maria"])
    decide = console.url(f"/ui/approvals/{approval_id}/decide")
    token = page.evaluate("document.body.dataset.csrf")

    without_token = page.request.post(decide, form={"decision": "approve"})
    assert without_token.status == 403, without_token.text()
    assert "did not carry this session's security token" in html.unescape(without_token.text())
    other_site = page.request.post(
        decide, form={"csrf": token, "decision": "approve"}, headers={"Origin": "http://evil.example"}
    )
    assert other_site.status == 403, other_site.text()

    # A page of another site posts a form to the gateway in maria's browser: the browser keeps
    # her SameSite cookie back, so it comes as nobody's.
    page.route("http://evil.example/**", lambda route: route.fulfill(body=EVIL_PAGE.format(action=decide)))
    page.goto("http://evil.example/prize")
    page.get_by_role("button", name="Claim your prize").click()
    expect(page.locator("body")).to_contain_text("Your console session has ended: sign in again.")
    assert console.approval(approval_id)["state"] == "pending"

    # The same request with the token, from the console itself, is hers: the refusals were the guard's.
    accepted = page.request.post(decide, form={"csrf": token, "decision": "approve"})
    assert accepted.ok and "Your decision (approve) is recorded." in accepted.text()
    assert console.approval(approval_id)["state"] == "approved"


def idle_seconds(database: Path, user: str) -> float:
    """How long ago the gateway last saw `user`'s console session, by its own record; 0 while unknown."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT last_seen_at FROM console_sessions WHERE user_name = ?", (user,)).fetchall()
    except sqlite3.OperationalError:  # busy while the gateway writes
        return 0.0
    if not rows:
        return 0.0
    last_seen = max(datetime.fromisoformat(str(row[0])) for row in rows)
    last_seen = last_seen if last_seen.tzinfo else last_seen.replace(tzinfo=UTC)
    return (datetime.now(UTC) - last_seen).total_seconds()


def test_an_idle_session_ends_and_the_next_page_asks_to_sign_in_again(tmp_path: Path, page: Page) -> None:
    with held_world(tmp_path, extra=f"\n[console]\nidle_timeout = {IDLE}\n", approvers=()) as world:
        key = create_users(world, {"maria": ("finance-managers", "approver")})["maria"]
        base = world.gateway.base_url
        sign_in(page, base, key)
        page.goto(f"{base}/ui/approvals/history")  # a page with no live updates: nothing more is asked
        expect(page.get_by_role("heading", name="Approvals history")).to_be_visible()

        database = world.gateway.directory / "gateway.db"
        wait_until(lambda: idle_seconds(database, "maria") > IDLE, timeout=10 * IDLE, what="the session to go idle")
        page.goto(f"{base}/ui/approvals")
        expect(page).to_have_url(f"{base}/ui/login?next=%2Fui%2Fapprovals")
        expect(page.get_by_label("User key")).to_be_visible()


def test_without_javascript_the_inbox_shows_the_call_and_its_form_approves_it(
    console: Console, new_page: Callable[..., Page]
) -> None:
    page = new_page(java_script_enabled=False)
    sign_in(page, console.base_url, console.keys["maria"])
    approval_id = console.holds(WITHOUT_SCRIPTS)
    page.goto(console.url(f"/ui/approvals?id={approval_id}"))
    expect(page.locator(f'.queue li[data-approval="{approval_id}"]')).to_have_attribute("aria-current", "true")
    expect(page.locator(".detail")).to_contain_text('"invoice_id": "INV-2003"')
    expect(page.locator("#live-status")).to_have_text("")  # the script did not run

    page.get_by_role("button", name="Approve").click()
    expect(page).to_have_url(console.url(f"/ui/approvals/{approval_id}?decided=approve"))
    expect(page.get_by_text("Your decision (approve) is recorded.")).to_be_visible()
    assert_paid(console.collects(WITHOUT_SCRIPTS), "INV-2003")


def test_on_a_phone_the_inbox_fits_the_screen_and_its_buttons_work(
    console: Console, new_page: Callable[..., Page]
) -> None:
    page = new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    sign_in(page, console.base_url, console.keys["maria"])
    approval_id = console.holds(never_run())
    page.goto(console.url(f"/ui/approvals?id={approval_id}"))
    expect(heading_of_the_call(page)).to_contain_text("pending")
    assert no_horizontal_overflow(page), "the inbox is wider than the phone's screen"

    approve = page.get_by_role("button", name="Approve")
    approve.scroll_into_view_if_needed()
    box = approve.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    approve.tap()
    expect(page.get_by_text("Your decision (approve) is recorded.")).to_be_visible()
    assert no_horizontal_overflow(page), "the approval page is wider than the phone's screen"


def test_a_workflows_held_call_waits_on_its_page_and_links_to_its_approval(console: Console, page: Page) -> None:
    workflow = f"invoices/settle {next(_UNRUN)}"  # a slash and a space: the page's path must carry them

    async def held() -> CallToolResult:
        async with mcp_client(console.world.gateway.url, console.world.agent_key) as client:
            with anyio.fail_after(CALL_DEADLINE):
                meta = {**NO_WAIT, "io.autonomy-gateway/workflow": workflow}
                return await client.call_tool(PAY, never_run(), meta=meta)

    approval_id = approval_id_in(in_background(held).result(CALL_DEADLINE))
    sign_in(page, console.base_url, console.keys["victor"])  # a viewer
    page.goto(console.url("/ui/workflows"))
    row = page.locator("table.workflows tbody tr").filter(has_text=workflow)
    expect(row.locator("td").nth(2)).to_have_text("1")  # pending approvals
    row.get_by_role("link", name=workflow).click()
    waiting = page.locator("section[aria-labelledby=pending-heading]")
    expect(waiting.get_by_role("heading", name="Waiting for approval")).to_be_visible()
    expect(waiting.get_by_role("link", name=approval_id)).to_be_visible()
    step = page.locator("table.timeline tbody tr").filter(has_text=PAY)
    expect(step).to_contain_text("hold")
    waiting.get_by_role("link", name=approval_id).click()
    expect(page).to_have_url(console.url(f"/ui/approvals/{approval_id}"))


@pytest.mark.parametrize("path", ACCESSIBILITY_SWEEP)
def test_console_pages_signed_in_have_no_serious_accessibility_violations(
    console: Console, page: Page, path: str
) -> None:
    approval_id = console.holds(never_run())
    sign_in(page, console.base_url, console.keys["ada"])
    if path == "{call}":  # a call's own page: the newest call the activity page links to
        page.goto(console.url("/ui/activity"))
        path = str(page.locator('a[href^="/ui/activity/"]').first.get_attribute("href"))
    if path == "{workflow}":  # a workflow's page: the most recently active one
        page.goto(console.url("/ui/workflows"))
        path = str(page.locator('a[href^="/ui/workflows/"]').first.get_attribute("href"))
    page.goto(console.url(path.format(approval=approval_id)))
    expect(page.get_by_role("heading", level=1)).to_have_count(1)  # what a screen reader announces as the page
    expect(page.get_by_role("heading", name="Not allowed")).to_have_count(0)
    assert_accessible(page)


@pytest.mark.parametrize("path", SIGNED_OUT_SWEEP)
def test_console_pages_signed_out_have_no_serious_accessibility_violations(
    console: Console, page: Page, path: str
) -> None:
    page.goto(console.url(path))
    expect(page.get_by_role("heading", level=1)).to_have_count(1)
    assert_accessible(page)


def test_screenshots_of_the_console(empty_inbox: Console, new_page: Callable[..., Page], tmp_path: Path) -> None:
    """The README's pictures: written into docs/ only when SAVE_SCREENSHOTS=1 asks for them."""
    folder = DOCS if screenshots_wanted() else tmp_path
    page = new_page(viewport=DESKTOP)
    sign_in(page, empty_inbox.base_url, empty_inbox.keys["maria"])
    decided = empty_inbox.holds({"invoice_id": "INV-2005", "amount": 27300.0})
    waiting = empty_inbox.holds({"invoice_id": "INV-2008", "amount": 15750.0})

    page.goto(empty_inbox.url(f"/ui/approvals/{decided}"))
    page.get_by_label("Comment").fill("Checked the contract with the vendor.")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_text("Your decision (approve) is recorded.")).to_be_visible()
    shots = [save_screenshot(page, folder / "console-approval.png")]

    page.goto(empty_inbox.url(f"/ui/approvals?id={waiting}"))
    expect(heading_of_the_call(page)).to_contain_text("pending")
    shots.append(save_screenshot(page, folder / "console-inbox.png"))

    page.goto(empty_inbox.url("/ui/"))
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".card").filter(has_text="Waiting for approval")).to_contain_text("1")
    shots.append(save_screenshot(page, folder / "console-overview.png"))
    for shot in shots:
        assert shot.read_bytes().startswith(b"\x89PNG"), shot


def test_a_person_signs_in_through_the_identity_provider_and_decides_a_held_call(tmp_path: Path, page: Page) -> None:
    """The real code flow with PKCE in the browser: the provider's own sign-in page, back to the console."""
    provider = OidcProvider({"olivia": ("correct horse battery", ("finance-managers", "approver"))})
    try:
        people = (
            f'\n[auth.people]\nissuer = "{provider.url}"\naudiences = ["gateway-console"]\n'
            'user_claim = "preferred_username"\nroles_claims = ["groups"]\n'
            '\n[console.oidc]\nclient_id = "gateway-console"\nlabel = "Sign in with Example SSO"\n'
        )
        with held_world(tmp_path, extra=people, approvers=()) as world:
            base = world.gateway.base_url
            provider.register("gateway-console", f"{base}/ui/auth/callback")
            approval_id = approval_id_in(
                in_background(lambda: _pay_without_waiting(world, never_run())).result(CALL_DEADLINE)
            )

            page.goto(f"{base}/ui/approvals/{approval_id}")
            page.get_by_role("link", name="Sign in with Example SSO").click()
            expect(page).to_have_url(re.compile(re.escape(provider.url) + "/authorize"))
            page.locator("#username").fill("olivia")
            page.locator("#password").fill("correct horse battery")
            page.get_by_role("button", name="Sign in").click()

            expect(page).to_have_url(f"{base}/ui/approvals/{approval_id}")  # where she was going
            expect(page.locator(".who")).to_contain_text("olivia")
            page.get_by_role("button", name="Approve").click()
            expect(page.locator(".approval")).to_contain_text("olivia approved at")
            shown = json.loads(world.gateway.cli("approvals", "show", approval_id, "--json").stdout)
            assert shown["state"] == "approved" and [vote["user"] for vote in shown["votes"]] == ["olivia"]
            signed_in = world.gateway.cli("audit", "search", "--kind", "console", "--json").stdout
            assert any(
                json.loads(line)["action"] == "sign_in" and json.loads(line)["via"] == "oidc"
                for line in signed_in.splitlines()
            )
    finally:
        provider.stop()


async def _pay_without_waiting(world: World, arguments: dict[str, Any]) -> CallToolResult:
    async with mcp_client(world.gateway.url, world.agent_key) as client:
        with anyio.fail_after(CALL_DEADLINE):
            return await client.call_tool(PAY, arguments, meta=NO_WAIT)


def test_the_explain_form_in_the_browser_says_what_gateway_policy_explain_says(console: Console, page: Page) -> None:
    """The argument fields come from the chosen tool's schema (the script swaps them in); the verdict is the CLI's."""
    sign_in(page, console.base_url, console.keys["ada"])
    page.goto(console.url("/ui/policies/explain"))
    page.get_by_label("Agent", exact=True).fill("finance-bot")
    page.get_by_label(re.compile("^Roles")).fill("finance")
    page.get_by_label("Tool").select_option("finance__pay_invoice")
    page.get_by_label(re.compile("invoice_id")).fill("INV-2004")
    page.get_by_label(re.compile("amount")).fill("5000")
    page.get_by_role("button", name="Explain", exact=True).last.click()

    shown = page.locator("#explain-text")
    expect(shown).to_contain_text("held: approval by role:finance-managers")
    arguments = json.dumps({"invoice_id": "INV-2004", "amount": 5000})
    told = console.world.gateway.cli(
        "policy", "explain", "--agent", "finance-bot", "--role", "finance",
        "--tool", "finance__pay_invoice", "--args", arguments,
    )  # fmt: skip
    assert shown.inner_text().strip() == told.stdout.strip()
