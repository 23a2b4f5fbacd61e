"""Questions an agent asks people (`gateway__ask_human`), and the answers it gets back.

An agent that is unsure, or sees an anomaly, asks a person and waits. The question is an
approval of another kind (`ApprovalKind.QUESTION`) in the approvals table: it is routed to the
people a policy or `[questions]` names, expires, escalates, is announced by webhook, wakes the
waiting request in any process and can be cancelled, all exactly as a held call's approval, and
the agent waits for it on the held calls' path (progress, no-wait, repeat to collect, tasks).
What differs lives here: what a question is, how it is routed, what counts as an answer, and
what the asking agent is told.

Routing: an approval policy that matches the `gateway__ask_human` call routes the question (its
`@approvers`, `@expires` and escalation; one answer settles it, so its quorum is one); without
one, `[questions]` does. An approval `forbid` exempts a held call from waiting, but a question
cannot be answered by nobody, so it then falls back to `[questions]` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from gateway.catalog import ToolEntry
from gateway.catalog.builtin import ASK_HUMAN
from gateway.connectors.base import JsonObject
from gateway.errors import InvalidAnswer, InvalidArguments
from gateway.policy.hold import HoldDecision, Requirement
from gateway.settings.connectors import GATEWAY_TOOLS_CONNECTOR
from gateway.settings.questions import QuestionSettings

Urgency = Literal["low", "normal", "high"]
URGENCIES: tuple[Urgency, ...] = ("low", "normal", "high")
#: Longest answer a person may give: an answer is a decision and its reason, not a document.
MAX_ANSWER_CHARS = 4000
MAX_QUESTION_CHARS = 4000
MAX_OPTIONS = 20
MAX_OPTION_CHARS = 200


def asks_human(entry: ToolEntry) -> bool:
    """Whether `entry` is the gateway's own `ask_human` tool (two string comparisons: it is on every held path)."""
    return entry.original == ASK_HUMAN and entry.connector == GATEWAY_TOOLS_CONNECTOR


@dataclass(frozen=True, slots=True)
class Question:
    """What an agent asks: the text, the options a person chooses from (none: a free answer), how urgent."""

    text: str
    options: tuple[str, ...] = ()
    urgency: Urgency = "normal"

    @classmethod
    def from_arguments(cls, arguments: Any) -> Question:
        """The question of a `gateway__ask_human` call, or `InvalidArguments` saying what to correct."""
        if not isinstance(arguments, Mapping):
            raise InvalidArguments('gateway__ask_human takes an object: {"question": "..."}')
        text = arguments.get("question")
        if not isinstance(text, str) or not text.strip():
            raise InvalidArguments("gateway__ask_human needs a non-empty 'question'")
        if len(text) > MAX_QUESTION_CHARS:
            raise InvalidArguments(f"the question is longer than {MAX_QUESTION_CHARS} characters; shorten it")
        if "\x00" in text:
            raise InvalidArguments("the question contains a NUL character (\\u0000), which cannot be stored; remove it")
        raw_options = arguments.get("options") or []
        if not isinstance(raw_options, list) or not all(isinstance(o, str) and o.strip() for o in raw_options):
            raise InvalidArguments("'options' must be a list of non-empty strings")
        options = tuple(option.strip() for option in raw_options)
        if len(options) == 1 or len(options) > MAX_OPTIONS:
            raise InvalidArguments(f"give between 2 and {MAX_OPTIONS} options, or none for a free answer")
        if len(set(options)) != len(options) or any(len(option) > MAX_OPTION_CHARS for option in options):
            raise InvalidArguments(f"options must be distinct and at most {MAX_OPTION_CHARS} characters each")
        if not all(option.isprintable() for option in options):
            raise InvalidArguments(
                "each option must be one line of printable text (no control characters): a person picks it"
            )
        urgency = arguments.get("urgency", "normal")
        if urgency not in URGENCIES:
            raise InvalidArguments(f"'urgency' must be one of {', '.join(URGENCIES)}")
        return cls(text.strip(), options, cast(Urgency, urgency))

    @classmethod
    def stored(cls, value: Mapping[str, Any]) -> Question:
        return cls(str(value["text"]), tuple(value.get("options") or ()), cast(Urgency, value.get("urgency", "normal")))

    def json(self) -> dict[str, Any]:
        return {"text": self.text, "options": list(self.options), "urgency": self.urgency}

    def accept(self, *, option: str | None, text: str | None) -> tuple[str, str | None]:
        """The answer and the option chosen, or `InvalidAnswer` saying what a valid answer is.

        With options, the person picks one of them (and may add a note in `text`); without, the
        answer is `text`.
        """
        note = text.strip() if text is not None and text.strip() else None
        if note is not None and len(note) > MAX_ANSWER_CHARS:
            raise InvalidAnswer(f"the answer is longer than {MAX_ANSWER_CHARS} characters; shorten it")
        if note is not None and "\x00" in note:
            raise InvalidAnswer("the answer contains a NUL character (\\u0000), which cannot be stored; remove it")
        if self.options:
            if option is None:
                raise InvalidAnswer(f"choose one of the options: {', '.join(self.options)}")
            if option not in self.options:
                raise InvalidAnswer(f"{option!r} is not one of the options ({', '.join(self.options)}); choose one")
            return (f"{option}: {note}" if note else option), option
        if option is not None:
            raise InvalidAnswer("this question has no options: answer it in words (text)")
        if note is None:
            raise InvalidAnswer("an answer is required: write it (text)")
        return note, None


def answer_record(answer: str, option: str | None, user: str, moment: datetime) -> dict[str, Any]:
    """The answer as the approval keeps it."""
    return {"answer": answer, "option": option, "answered_by": user, "answered_at": _when(moment)}


def question_hold(hold: HoldDecision, settings: QuestionSettings) -> HoldDecision:
    """The hold of a `gateway__ask_human` call: the approval policy's routing, else `[questions]`'s.

    When neither names anyone the hold has no requirement: the hold stage refuses the question
    (`QuestionsNotRouted`) where the refusal is on record.
    """
    if hold.held and hold.requirement is not None:
        return replace(hold, requirement=replace(hold.requirement, quorum=1))
    if not settings.approvers:
        return HoldDecision(held=True, policies=hold.policies)
    escalate_after = timedelta(seconds=settings.escalate_after) if settings.escalate_after is not None else None
    requirement = Requirement(
        approvers=settings.approvers,
        expires_in=timedelta(seconds=settings.expires),
        reason="the agent asks a person",
        reasons=("the agent asks a person",),
        escalate_after=escalate_after,
        escalate_to=settings.escalate_to if escalate_after is not None else (),
    )
    return HoldDecision(held=True, requirement=requirement)


def answer_result(question_id: str, answer: Mapping[str, Any]) -> JsonObject:
    """The tool result of an answered question: the answer in words, and the same as structured content."""
    option = answer.get("option")
    chose = f" (chose {option!r})" if option is not None else ""
    text = f"{answer['answered_by']} answered at {answer['answered_at']}{chose}: {answer['answer']}"
    structured = {
        "questionId": question_id,
        "answer": answer["answer"],
        "option": option,
        "answeredBy": answer["answered_by"],
        "answeredAt": answer["answered_at"],
    }
    return {"content": [{"type": "text", "text": text}], "structuredContent": structured}


def unanswered_message(question_id: str, *, expired_at: datetime | None, ended_by: str | None, why: str | None) -> str:
    """What the agent is told when its question ended without an answer: expired, or withdrawn by someone."""
    if ended_by is not None:
        said = f": {why}" if why else ""
        return (
            f"Your question {question_id} was withdrawn by {ended_by}{said}. Nobody will answer it; do not act as "
            "if a person had agreed. Ask again only if the reason allows it."
        )
    at = f" at {_when(expired_at)}" if expired_at is not None else ""
    return (
        f"Nobody answered your question {question_id} in time: it expired{at} without an answer. Do not act as if "
        "a person had agreed; ask again (perhaps with a higher urgency) or stop and report that no one answered."
    )


def pending_message(question_id: str, approvers: tuple[str, ...], expires_at: datetime) -> str:
    """What the agent is told when the wait ended before anyone answered."""
    return (
        f"Your question {question_id} is waiting for an answer from {', '.join(approvers)} until "
        f"{_when(expires_at)}. Repeat the identical call (same question, options and urgency) to collect the "
        "answer; it is asked only once."
    )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
