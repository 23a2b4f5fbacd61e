"""Questions in the approvals store, on SQLite and PostgreSQL: answering, refusals, cancelling, repeats."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from gateway.approvals import ApprovalKind, ApprovalState, ApprovalStore, Requirement, Sealer, arguments_digest
from gateway.calls import Call, Origin, Target
from gateway.coordination.questions import Question
from gateway.errors import ApprovalConflict, InvalidAnswer, InvalidApprovalRequest, NotAnApprover, SelfApproval
from gateway.identity.principal import Principal
from gateway.storage import Database

pytestmark = pytest.mark.anyio

AGENT = Principal(agent="support-bot", roles=("support",), user="carl@example.com")
ARGUMENTS = {"question": "Refund order 7?", "options": ["Yes", "No"]}
KEY = base64.b64encode(os.urandom(32)).decode()


async def _ask(store: ApprovalStore):  # type: ignore[no-untyped-def]
    call = Call("tools/call", Origin(AGENT), "gateway__ask_human", ARGUMENTS, target=Target("gateway", "ask_human"))
    return await store.create(
        call,
        Requirement(approvers=("role:support-leads",), expires_in=timedelta(minutes=5)),
        policy_ids=(),
        reasons=("the agent asks a person",),
        redacted_arguments=ARGUMENTS,
        policy_version=None,
        question=Question.from_arguments(ARGUMENTS),
    )


async def test_the_first_answer_settles_a_question_and_a_repeat_finds_it(database: Database) -> None:
    store = ApprovalStore(database, Sealer([("k1", KEY)]))
    question = await _ask(store)
    assert question.kind is ApprovalKind.QUESTION and question.question["options"] == ["Yes", "No"]

    with pytest.raises(InvalidAnswer, match="'Maybe' is not one of the options"):
        await store.answer(question.id, user="lena", roles=("support-leads",), option="Maybe")
    with pytest.raises(NotAnApprover):
        await store.answer(question.id, user="otto", roles=("sales",), option="Yes")
    with pytest.raises(SelfApproval):
        await store.answer(question.id, user="carl@example.com", roles=("support-leads",), option="Yes")
    with pytest.raises(InvalidApprovalRequest, match="answer it"):
        await store.vote(question.id, user="lena", roles=("support-leads",), approve=True)

    outcomes: list[object] = []

    async def answer(user: str, option: str) -> None:
        try:
            outcomes.append(await store.answer(question.id, user=user, roles=("support-leads",), option=option))
        except ApprovalConflict as conflict:
            outcomes.append(conflict)

    async with anyio.create_task_group() as group:  # two people answer at once: exactly one answer counts
        group.start_soon(answer, "lena", "Yes")
        group.start_soon(answer, "mia", "No")
    settled = [outcome for outcome in outcomes if not isinstance(outcome, ApprovalConflict)]
    assert len(settled) == 1
    stored = await store.get(question.id)
    assert stored.state is ApprovalState.ANSWERED and stored.sealed_arguments is None
    assert stored.answer["answered_by"] in ("lena", "mia")

    digest = arguments_digest("gateway__ask_human", ARGUMENTS)
    repeat = await store.find_repeat(AGENT.agent, "gateway__ask_human", digest, refused_since=datetime.now(UTC))
    assert repeat is not None and repeat.id == question.id


async def test_a_pending_question_can_be_cancelled_and_then_not_answered(database: Database) -> None:
    store = ApprovalStore(database, Sealer([("k1", KEY)]))
    question = await _ask(store)
    cancelled = await store.cancel(question.id, actor="admin", comment="the agent was suspended")
    assert cancelled.state is ApprovalState.CANCELLED and cancelled.kind is ApprovalKind.QUESTION
    with pytest.raises(ApprovalConflict, match="already cancelled"):
        await store.answer(question.id, user="lena", roles=("support-leads",), option="No")


def test_a_question_refuses_arguments_it_cannot_ask() -> None:
    from gateway.errors import InvalidArguments

    with pytest.raises(InvalidArguments, match="between 2 and 20 options"):
        Question.from_arguments({"question": "Ok?", "options": ["Yes"]})
    with pytest.raises(InvalidArguments, match="urgency"):
        Question.from_arguments({"question": "Ok?", "urgency": "now"})
    with pytest.raises(InvalidArguments, match="non-empty 'question'"):
        Question.from_arguments({"question": " "})


def test_what_postgresql_cannot_store_is_refused_as_a_question_or_an_answer() -> None:
    """A NUL in the question or the answer, or a control character in an option, is refused with a
    reason instead of failing in the database (PostgreSQL text cannot hold NUL) or in a person's view."""
    from gateway.errors import InvalidArguments

    with pytest.raises(InvalidArguments, match="NUL character"):
        Question.from_arguments({"question": "Refund\x00?"})
    with pytest.raises(InvalidArguments, match="printable text"):
        Question.from_arguments({"question": "Ok?", "options": ["Yes\x00", "No"]})
    with pytest.raises(InvalidAnswer, match="NUL character"):
        Question.from_arguments({"question": "Why?"}).accept(option=None, text="because\x00")
    with pytest.raises(InvalidAnswer, match="NUL character"):
        Question.from_arguments(ARGUMENTS).accept(option="Yes", text="see\x00note")
