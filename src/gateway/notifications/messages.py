"""What approvers are told: one approval and one event, as the gateway's JSON or as a Slack message.

A message leaves the gateway for systems the operator trusts less than its database, so it
carries the facts a person needs to decide (who asks, for what tool, why it is held, who may
decide, how far the vote has come, until when) and never the sealed exact arguments: the redacted
ones at most, cut to `MAX_ARGUMENTS_CHARS` so one huge call cannot make a message a receiver
refuses. Both formats are built from the same `facts`, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from gateway.approvals.model import Approval, Vote
from gateway.settings.notifications import WebhookEvent

#: Characters of redacted arguments a message may carry; longer ones are cut and marked.
MAX_ARGUMENTS_CHARS = 2000
#: Bound on each free-text item (reasons, comments), for the same reason.
MAX_TEXT_CHARS = 500

_HEADLINES: dict[WebhookEvent, str] = {
    "created": "Approval needed",
    "escalated": "Approval escalated",
    "decided": "Approval decided",
    "expired": "Approval expired",
}


def approval_link(console_url: str | None, approval_id: str) -> str | None:
    """Where a person opens the approval, when the operator said where the console is."""
    if console_url is None:
        return None
    return f"{console_url.rstrip('/')}/ui/approvals/{approval_id}"


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _cut(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _arguments(redacted: Any) -> tuple[Any, bool]:
    """The redacted arguments as they are when small, else a cut JSON text; and whether they were cut."""
    if redacted is None:
        return None, False
    text = orjson.dumps(redacted, default=str, option=orjson.OPT_SORT_KEYS).decode()
    if len(text) <= MAX_ARGUMENTS_CHARS:
        return redacted, False
    return text[: MAX_ARGUMENTS_CHARS - 1] + "…", True


def facts(
    approval: Approval,
    event: WebhookEvent,
    *,
    votes: Sequence[Vote] = (),
    console_url: str | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """The generic JSON message: what the `json` format sends, and what the Slack one is drawn from."""
    arguments, cut = _arguments(approval.redacted_arguments)
    return {
        "event": event,
        "occurred_at": _time(occurred_at),
        "approval": {
            "id": approval.id,
            "state": approval.state.value,
            "version": approval.version,
            "agent": approval.agent,
            "user": approval.user,
            "tool": approval.tool,
            "connector": approval.connector,
            "original_tool": approval.original_tool,
            "reasons": [_cut(reason) for reason in approval.reasons],
            "policy_ids": list(approval.policy_ids),
            "approvers": list(approval.approvers),
            "escalate_to": list(approval.escalate_to),
            "quorum": approval.quorum,
            "votes": {
                "approve": sum(1 for vote in votes if vote.approve),
                "deny": sum(1 for vote in votes if not vote.approve),
                "cast": [
                    {
                        "user": vote.user,
                        "approve": vote.approve,
                        "comment": None if vote.comment is None else _cut(vote.comment),
                        "time": _time(vote.time),
                    }
                    for vote in votes
                ],
            },
            "created_at": _time(approval.created_at),
            "expires_at": _time(approval.expires_at),
            "escalate_at": _time(approval.escalate_at),
            "escalated_at": _time(approval.escalated_at),
            "decided_at": _time(approval.decided_at),
            "arguments": arguments,
            "arguments_truncated": cut,
            "link": approval_link(console_url, approval.id),
            "kind": approval.kind.value,
            "question": _question(approval.question),
            "answer": _question(approval.answer),
        },
    }


def _question(value: Any) -> Any:
    """A question (or its answer) with its free text cut like any other text a message carries."""
    if not isinstance(value, dict):
        return None
    return {key: _cut(item) if isinstance(item, str) else item for key, item in value.items()}


def json_body(
    approval: Approval,
    event: WebhookEvent,
    *,
    votes: Sequence[Vote] = (),
    console_url: str | None = None,
    occurred_at: datetime | None = None,
) -> bytes:
    return orjson.dumps(facts(approval, event, votes=votes, console_url=console_url, occurred_at=occurred_at))


def _escape(text: str) -> str:
    """Slack's mrkdwn reads `&`, `<` and `>` as markup; an agent's name must not become a link or a mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(
    approval: Approval,
    event: WebhookEvent,
    *,
    votes: Sequence[Vote] = (),
    console_url: str | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` for notifications and clients without blocks, `blocks` for the rest."""
    body = facts(approval, event, votes=votes, console_url=console_url, occurred_at=occurred_at)["approval"]
    headline = _HEADLINES[event]
    who = _escape(approval.agent) + (f" (for {_escape(approval.user)})" if approval.user else "")
    tool = f"`{_escape(approval.tool)}` on `{_escape(approval.connector)}`"
    text = f"{headline}: {who} wants to call {tool} [{approval.state.value}]"
    if body["question"] is not None:
        headline = "Question for a person" if event == "created" else headline.replace("Approval", "Question")
        urgency = body["question"].get("urgency", "normal")
        text = f"{headline} ({urgency}): {who} asks: {_escape(body['question']['text'])} [{approval.state.value}]"
    tally = f"{body['votes']['approve']} of {approval.quorum} approvals"
    if body["votes"]["deny"]:
        tally += f", {body['votes']['deny']} denied"
    fields = [
        f"*Agent*\n{who}",
        f"*Tool*\n{tool}",
        f"*State*\n{approval.state.value}",
        f"*Votes*\n{tally}",
        f"*Approvers*\n{_escape(', '.join(approval.approvers)) or '-'}",
        f"*Expires*\n{body['expires_at']}",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline}},
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": field} for field in fields]},
    ]
    if approval.reasons:
        reasons = "\n".join(f"• {_escape(reason)}" for reason in body["reasons"])
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"*Why held*\n{reasons}"}]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Approval `{_escape(approval.id)}`"}]})
    if body["link"] is not None:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open approval"},
                        "url": body["link"],
                        "action_id": "open_approval",
                    }
                ],
            }
        )
        text += f" <{body['link']}|open>"
    return {"text": text, "blocks": blocks}


def slack_body(
    approval: Approval,
    event: WebhookEvent,
    *,
    votes: Sequence[Vote] = (),
    console_url: str | None = None,
    occurred_at: datetime | None = None,
) -> bytes:
    return orjson.dumps(slack_message(approval, event, votes=votes, console_url=console_url, occurred_at=occurred_at))
