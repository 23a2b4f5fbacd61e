"""A person answers an agent's question in the console: Chromium driven by Playwright, a real gateway.

Sync tests (see `browser.py`): the agent's waiting call runs on a thread of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.types import CallToolResult
from playwright.sync_api import Page, expect

from browser import assert_accessible, in_background, sign_in
from harness import GatewayProcess, free_port, mcp_client, stdio_connector, write_gateway_config
from test_approvals_e2e import approvals_toml, sealing_key, text_of

ASK = "gateway__ask_human"
DEADLINE = 30.0


@dataclass
class Desk:
    gateway: GatewayProcess
    agent_key: str
    keys: dict[str, str]

    def url(self, path: str) -> str:
        return f"{self.gateway.base_url}{path}"

    def asks(self, arguments: dict[str, Any]) -> Any:
        async def call() -> CallToolResult:
            async with mcp_client(self.gateway.url, self.agent_key) as client:
                with anyio.fail_after(DEADLINE):
                    return await client.call_tool(ASK, arguments)

        return in_background(call)


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    directory: Path = tmp_path_factory.mktemp("ask-human-browser")
    extra = approvals_toml(key=sealing_key()) + '\n[questions]\napprovers = ["support-leads"]\n'
    write_gateway_config(directory, {"sink": stdio_connector()}, extra=extra)
    gateway = GatewayProcess(directory, free_port())
    gateway.start()
    try:
        keys = {}
        for name, roles in (("lena", ("support-leads", "approver")), ("otto", ("sales", "approver"))):
            role_args = [arg for role in roles for arg in ("--role", role)]
            keys[name] = str(json.loads(gateway.cli("users", "create", name, *role_args, "--json").stdout)["key"])
        yield Desk(gateway, gateway.create_key("support-bot"), keys)
    finally:
        gateway.stop()


def test_a_person_answers_a_question_by_clicking_an_option_and_the_waiting_agent_receives_it(
    desk: Desk, page: Page
) -> None:
    question = {"question": "Refund order 2001 in full?", "options": ["Full refund", "Partial refund"]}
    answer = desk.asks(question)
    sign_in(page, desk.gateway.base_url, desk.keys["lena"])
    page.goto(desk.url("/ui/approvals"))
    queue = page.get_by_role("list", name="Waiting for approval")
    expect(queue).to_contain_text("Question")
    expect(queue).not_to_contain_text("0/1")  # one answer settles a question: no count of approvals
    detail = page.locator(".detail")
    expect(detail).to_contain_text("support-bot asks: Refund order 2001 in full?")
    expect(detail).to_contain_text("Urgency: normal")
    expect(detail).to_contain_text("support-leads · the first answer settles it")  # no quorum of approvals
    expect(detail).not_to_contain_text("()")  # routed by [questions], so no policy ids to show
    assert_accessible(page)
    assert not answer.done(), "the agent did not wait for the answer"

    page.get_by_label("Note").fill("the parcel never arrived")
    page.get_by_role("button", name="Full refund").click()
    expect(page.get_by_text("Your decision (answer) is recorded.")).to_be_visible()
    expect(page.locator(".question")).to_contain_text("Answered by lena")

    result: CallToolResult = answer.result(DEADLINE)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    assert result.structured_content["option"] == "Full refund"
    assert result.structured_content["answer"] == "Full refund: the parcel never arrived"
    assert result.structured_content["answeredBy"] == "lena"


def test_a_person_without_the_role_sees_the_question_but_no_answer_buttons(desk: Desk, page: Page) -> None:
    answer = desk.asks({"question": "Waive the late fee for customer 12?", "options": ["Waive", "Keep"]})
    sign_in(page, desk.gateway.base_url, desk.keys["otto"])
    page.goto(desk.url("/ui/approvals"))
    expect(page.locator(".detail")).to_contain_text("Waive the late fee for customer 12?")
    expect(page.get_by_role("button", name="Waive")).to_have_count(0)
    expect(page.locator(".detail")).to_contain_text("You cannot answer this question")
    assert not answer.done()
    desk.gateway.cli("approvals", "answer", _pending_id(desk), "--option", "Keep", "--user-key", desk.keys["lena"])
    assert answer.result(DEADLINE).structured_content["option"] == "Keep"


def _pending_id(desk: Desk) -> str:
    rows = [
        json.loads(line)
        for line in desk.gateway.cli("approvals", "list", "--state", "pending", "--json").stdout.splitlines()
    ]
    assert len(rows) == 1, rows
    return str(rows[0]["id"])
