"""The console's review of withheld tools in real headless Chromium: a viewer sees, an admin accepts.

A real gateway under `new_tools = "review"` holds every tool of the shifting backend; the page
shows each with its diff and flags, a viewer gets no button, and an admin's acceptance (with its
CSRF token, from the form) serves the tool to agents at once and is audited.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from browser import assert_accessible, in_background, sign_in
from harness import GatewayProcess, free_port, mcp_client, write_gateway_config
from test_tool_pins import CHANGED, shifting_connector


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("pins-console")
    shifts = directory / "shifts.json"
    shifts.write_text(json.dumps(CHANGED))  # flagged text, so the page shows flags
    write_gateway_config(
        directory,
        {"shift": shifting_connector(shifts)},
        extra='\n[catalog]\nnew_tools = "review"\nreview_poll_seconds = 0.2\n',
    )
    process = GatewayProcess(directory, free_port())
    process.start()
    try:
        yield process
    finally:
        process.stop()


def user_key(gateway: GatewayProcess, name: str, role: str) -> str:
    return str(json.loads(gateway.cli("users", "create", name, "--role", role, "--json").stdout)["key"])


def agent_tools(gateway: GatewayProcess, key: str) -> set[str]:
    async def names() -> set[str]:
        async with mcp_client(gateway.url, key) as client:
            return {tool.name for tool in (await client.list_tools()).tools}

    return in_background(names).result(timeout=60)  # Playwright runs its own loop on this thread


def test_a_viewer_sees_the_pending_tool_and_its_flags_without_an_accept_button(
    gateway: GatewayProcess, page: Page
) -> None:
    sign_in(page, gateway.base_url, user_key(gateway, "victor", "viewer"))
    page.goto(f"{gateway.base_url}/ui/connectors")
    pending = page.locator("#pending-shift__lookup")
    expect(pending.get_by_text("held", exact=True)).to_be_visible()
    expect(pending.get_by_label("Flags")).to_contain_text("tells the model to set aside its instructions")
    expect(pending.get_by_label("Diff of shift__lookup")).to_contain_text('"export_all"')
    expect(page.get_by_role("button", name="Accept shift__lookup")).to_have_count(0)
    assert_accessible(page)


def test_an_admin_accepts_a_pending_tool_and_agents_are_offered_it(gateway: GatewayProcess, page: Page) -> None:
    agent = gateway.create_key("console-agent")
    assert "shift__lookup" not in agent_tools(gateway, agent)
    sign_in(page, gateway.base_url, user_key(gateway, "ada", "admin"))
    page.goto(f"{gateway.base_url}/ui/connectors")
    pending = page.locator("#pending-shift__lookup")
    pending.get_by_label("Reason").fill("export_all is expected; text reviewed")
    pending.get_by_role("button", name="Accept shift__lookup").click()
    expect(page.get_by_role("status")).to_contain_text("shift__lookup is accepted")
    expect(page.locator("#pending-shift__lookup")).to_have_count(0)
    expect(page.locator("#pending-shift__relist")).to_have_count(1)  # the other tool still waits
    assert "shift__lookup" in agent_tools(gateway, agent)  # served by this process at once
    found = gateway.cli("audit", "search", "--json", "--kind", "tool_pin", "--limit", "50").stdout
    accepted = [event for event in map(json.loads, found.splitlines()) if event["action"] == "accepted"]
    assert [(e["exposed"], e["actor"]) for e in accepted] == [("shift__lookup", "ada")]
    console = gateway.cli("audit", "search", "--json", "--kind", "console", "--limit", "50").stdout
    assert "tool_accepted" in console


def test_a_stale_form_is_refused(gateway: GatewayProcess, page: Page) -> None:
    sign_in(page, gateway.base_url, user_key(gateway, "grace", "admin"))
    answer = page.request.post(
        f"{gateway.base_url}/ui/connectors/accept",
        form={"tool": "shift__relist", "reason": "no token"},
        headers={"Origin": gateway.base_url},
    )
    assert answer.status == 403
    page.goto(f"{gateway.base_url}/ui/connectors")
    expect(page.locator("#pending-shift__relist")).to_have_count(1)  # nothing was accepted
