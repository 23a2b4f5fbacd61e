"""`gateway__ask_human` end to end: a real gateway, the official `mcp` client, the CLI and the API.

One gateway for the module: questions go to `support-leads` by `[questions]`, except low-urgency
ones, which an approval policy routes to the night shift with a one-second expiry (so the expiry
test is short and the policy routing is shown). A webhook receiver hears every question. Each
test asks a question of its own, so the tests do not see each other's answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.types import CallToolResult

from harness import GatewayProcess, eventually, free_port, mcp_client, stdio_connector, write_gateway_config
from test_approvals_e2e import (
    NO_WAIT,
    WEBHOOK_SECRET,
    Receiver,
    approvals_toml,
    sealing_key,
    text_of,
    webhook_receiver,
)

ASK = "gateway__ask_human"
DEADLINE = 30.0

LOW_URGENCY_POLICY = """
@id("low-urgency-questions-go-to-the-night-shift")
@approvers("role:night-shift")
@expires("PT1S")
@reason("Low-urgency questions go to the night shift.")
permit (principal, action == Action::"gateway__ask_human", resource)
when { context.input has urgency && context.input.urgency == "low" };
"""


@dataclass
class Asking:
    gateway: GatewayProcess
    receiver: Receiver
    agent_key: str
    keys: dict[str, str]

    def cli(self, *args: str, check: bool = True) -> Any:
        return self.gateway.cli(*args, check=check)

    async def cli_async(self, *args: str, check: bool = True) -> Any:
        return await anyio.to_thread.run_sync(partial(self.gateway.cli, *args, check=check))

    def api(self, person: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.gateway.base_url}/api/v1/approvals{path}",
            headers={"Authorization": f"Bearer {self.keys[person]}"},
            timeout=DEADLINE,
            **kwargs,
        )

    async def pending_question(self, text: str) -> str:
        """The id of the pending question with `text`, once the agent's call made it."""

        def found() -> str | None:
            for row in self.api("lena", "GET", "?state=pending&limit=200").json()["approvals"]:
                if row["kind"] == "question" and row["question"]["text"] == text:
                    return str(row["id"])
            return None

        await eventually(lambda: found() is not None, timeout=DEADLINE, what=f"the question {text!r}")
        question_id = found()
        assert question_id is not None
        return question_id


@pytest.fixture(scope="module")
def asking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Asking]:
    directory = tmp_path_factory.mktemp("ask-human")
    with webhook_receiver() as receiver:
        extra = (
            approvals_toml(key=sealing_key())
            + '\n[questions]\napprovers = ["support-leads"]\nexpires = 600\n'
            + f'\n[[notifications.webhooks]]\nname = "people"\nurl = "{receiver.url}"\nsecret = "{WEBHOOK_SECRET}"\n'
        )
        write_gateway_config(directory, {"sink": stdio_connector()}, extra=extra)
        approval_dir = directory / "policies" / "approval"
        approval_dir.mkdir(parents=True, exist_ok=True)
        (approval_dir / "questions.cedar").write_text(LOW_URGENCY_POLICY)
        gateway = GatewayProcess(directory, free_port())
        gateway.start()
        try:
            keys = {}
            for name, role in (("lena", "support-leads"), ("otto", "sales"), ("nina", "night-shift")):
                created = gateway.cli("users", "create", name, "--role", role, "--json")
                keys[name] = str(json.loads(created.stdout)["key"])
            yield Asking(gateway, receiver, gateway.create_key("support-bot"), keys)
        finally:
            gateway.stop()


async def ask(client: Client, arguments: dict[str, Any], **kwargs: Any) -> CallToolResult:
    with anyio.fail_after(DEADLINE):
        return await client.call_tool(ASK, arguments, **kwargs)


@pytest.mark.anyio
async def test_an_agent_waits_and_receives_the_option_a_person_chose_on_the_command_line(asking: Asking) -> None:
    question = {"question": "Refund order 1001 twice? The customer was charged twice.", "options": ["Yes", "No"]}
    answered: list[CallToolResult] = []
    heard: list[str | None] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        heard.append(message)

    async with mcp_client(asking.gateway.url, asking.agent_key) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert ASK in listed
        # An approval policy routes some questions, yet the tool is not described as "approved before it runs".
        assert "Requires approval" not in (listed[ASK].description or "")
        async with anyio.create_task_group() as group:

            async def agent() -> None:
                answered.append(await ask(client, question, progress_callback=progress))

            group.start_soon(agent)
            question_id = await asking.pending_question(question["question"])
            await eventually(lambda: bool(heard), timeout=DEADLINE, what="progress while the agent waits")
            assert not answered
            said = await asking.cli_async(
                "approvals", "answer", question_id, "--option", "Yes", "--user-key", asking.keys["lena"]
            )
            assert f"Answered question {question_id}: Yes" in said.stdout
        result = answered[0]
        assert not result.is_error, text_of(result)
        assert result.structured_content is not None
        assert result.structured_content["answer"] == "Yes" and result.structured_content["option"] == "Yes"
        assert result.structured_content["answeredBy"] == "lena"
        assert result.structured_content["questionId"] == question_id
        assert "lena answered at" in text_of(result)
        assert heard[0] is not None and "waiting for an answer from role:support-leads" in heard[0]

        # Repeating the identical call collects the same answer; nobody is asked again.
        again = await ask(client, question, meta=NO_WAIT)
        assert not again.is_error and again.structured_content == result.structured_content

    shown = json.loads(asking.cli("approvals", "show", question_id, "--json").stdout)
    assert shown["state"] == "answered" and shown["answer"]["answered_by"] == "lena"
    printed = asking.cli("approvals", "show", question_id).stdout
    assert "Answerers: role:support-leads (the first answer settles it)" in printed
    assert "Quorum" not in printed  # one answer settles a question
    # Every ask and every answer is on the audit record; the chain is whole.
    events = asking.cli("audit", "search", "--kind", "approval").stdout.splitlines()
    assert any(question_id in line and " answered " in line and line.endswith(" Yes") for line in events), events
    assert json.loads(asking.cli("audit", "verify", "--json").stdout)["ok"] is True
    # The people's webhook heard the question and its answer, with the question's text and options.
    await eventually(
        lambda: len([m for _, m in asking.receiver.received if json.loads(m)["approval"]["id"] == question_id]) >= 2,
        timeout=DEADLINE,
        what="the question's webhook messages",
    )
    mine = [json.loads(body) for _, body in asking.receiver.received]
    mine = [message for message in mine if message["approval"]["id"] == question_id]
    assert [message["event"] for message in mine] == ["created", "decided"]
    created, decided = (message["approval"] for message in mine)
    assert created["kind"] == "question" and created["question"]["options"] == ["Yes", "No"]
    assert created["approvers"] == ["role:support-leads"]
    assert decided["state"] == "answered" and decided["answer"]["answer"] == "Yes"


@pytest.mark.anyio
async def test_a_person_answers_through_the_api_in_their_own_words_while_the_agent_waits(asking: Asking) -> None:
    question = {"question": "Which warehouse should ship order 1002?", "urgency": "high"}
    answered: list[CallToolResult] = []
    async with mcp_client(asking.gateway.url, asking.agent_key) as client:
        async with anyio.create_task_group() as group:

            async def agent() -> None:
                answered.append(await ask(client, question))

            group.start_soon(agent)
            question_id = await asking.pending_question(question["question"])
            shown = asking.api("lena", "GET", f"/{question_id}").json()
            assert shown["question"] == {"text": question["question"], "options": [], "urgency": "high"}

            # Not among the people named: refused, and the question stays pending.
            refused = asking.api("otto", "POST", f"/{question_id}/answer", json={"text": "Berlin"})
            assert refused.status_code == 403 and refused.json()["error"] == "NotAnApprover"
            # A question is answered, not approved.
            voted = asking.api("lena", "POST", f"/{question_id}/approve", json={})
            assert voted.status_code == 400 and "answer it" in voted.json()["detail"]
            empty = asking.api("lena", "POST", f"/{question_id}/answer", json={"text": "  "})
            assert empty.status_code == 400 and empty.json()["error"] == "InvalidAnswer"
            assert not answered

            ok = asking.api("lena", "POST", f"/{question_id}/answer", json={"text": "Ship it from Leipzig."})
            assert ok.status_code == 200, ok.text
            assert ok.json()["state"] == "answered"
        result = answered[0]
        assert not result.is_error, text_of(result)
        assert result.structured_content is not None
        assert result.structured_content["answer"] == "Ship it from Leipzig."
        assert result.structured_content["option"] is None

        late = asking.api("lena", "POST", f"/{question_id}/answer", json={"text": "Hamburg"})
        assert late.status_code == 409 and "already answered by lena" in late.json()["detail"]


@pytest.mark.anyio
async def test_an_answer_not_among_the_options_is_refused_and_the_command_says_which_are(asking: Asking) -> None:
    question = {"question": "Escalate ticket 77 to legal?", "options": ["Escalate", "Close"]}
    async with mcp_client(asking.gateway.url, asking.agent_key) as client:
        pending = await ask(client, question, meta=NO_WAIT)
        assert pending.is_error and "is waiting for an answer from role:support-leads" in text_of(pending)
        question_id = await asking.pending_question(question["question"])

        refused = asking.api("lena", "POST", f"/{question_id}/answer", json={"option": "Maybe"})
        assert refused.status_code == 400
        assert "'Maybe' is not one of the options (Escalate, Close)" in refused.json()["detail"]
        said = await asking.cli_async(
            "approvals", "answer", question_id, "--option", "Later", "--user-key", asking.keys["lena"], check=False
        )
        assert said.returncode != 0 and "not one of the options" in said.stderr
        # The agent itself (and so its key) cannot answer; a person without the role cannot either.
        outsider = await asking.cli_async(
            "approvals", "answer", question_id, "--option", "Close", "--user-key", asking.keys["otto"], check=False
        )
        assert outsider.returncode != 0 and "not among the people who answer" in outsider.stderr

        chosen = asking.api("lena", "POST", f"/{question_id}/answer", json={"option": "Close", "text": "no merit"})
        assert chosen.status_code == 200, chosen.text
        collected = await ask(client, question, meta=NO_WAIT)
        assert collected.structured_content is not None
        assert collected.structured_content["answer"] == "Close: no merit"
        assert collected.structured_content["option"] == "Close"


@pytest.mark.anyio
async def test_a_question_nobody_answers_in_time_ends_with_a_clear_result(asking: Asking) -> None:
    question = {"question": "Archive last year's closed tickets?", "urgency": "low"}
    async with mcp_client(asking.gateway.url, asking.agent_key) as client:
        result = await ask(client, question)  # the policy gives low-urgency questions one second
    assert result.is_error
    said = text_of(result)
    assert "Nobody answered your question" in said and "expired" in said
    assert "Do not act as if a person had agreed" in said
    rows = asking.api("nina", "GET", "?state=expired&limit=200").json()["approvals"]
    mine = [row for row in rows if row["kind"] == "question" and row["question"]["text"] == question["question"]]
    assert mine and mine[0]["approvers"] == ["role:night-shift"]  # routed by the approval policy


@pytest.mark.anyio
async def test_a_cancelled_question_tells_the_agent_who_withdrew_it(asking: Asking) -> None:
    question = {"question": "Close account 9 for fraud?", "options": ["Close", "Keep"]}
    async with mcp_client(asking.gateway.url, asking.agent_key) as client:
        await ask(client, question, meta=NO_WAIT)
        question_id = await asking.pending_question(question["question"])
        cancelled = asking.api("lena", "POST", f"/{question_id}/cancel", json={"comment": "handled by phone"})
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        repeated = await ask(client, question, meta=NO_WAIT)
    assert repeated.is_error
    assert f"Your question {question_id} was withdrawn by lena: handled by phone" in text_of(repeated)
    late = asking.cli(
        "approvals", "answer", question_id, "--option", "Keep", "--user-key", asking.keys["lena"], check=False
    )
    assert late.returncode == 1
    assert f"question {question_id} is already cancelled by lena: handled by phone" in late.stderr, late.stderr
